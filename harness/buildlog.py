"""Build commands whose output goes to a log file: the first error is what a failure shows.

The kernel's make, QEMU's configure and ninja, and fio's configure and
make all fail the same way for a user: a long log, of which one line
matters.  :func:`first_error` finds it; :func:`run` runs one command with
its output appended to the log and raises a HarnessError that quotes that
line and names the log.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.errors import HarnessError

_ERROR = re.compile(r"(error:|ERROR:|Error \d+|\*\*\* |undefined reference|No rule to make target)")


def first_error(log: Path) -> str:
    """The log's first line that looks like a compiler or make error (not
    the ``$ command`` lines :func:`run` writes)."""
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("$ ") and _ERROR.search(line):
            return line.strip()
    return "(no compiler error found; see the log)"


def run(cmd: list[str], cwd: Path, log: Path, what: str) -> None:
    """Run *cmd* in *cwd*, appending ``$ cmd`` and its output to *log*;
    a HarnessError naming *what*, the first error and the log on failure."""
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise HarnessError(f"{what} failed (exit {r.returncode}): {first_error(log)}",
                           f"full log: {log}")
