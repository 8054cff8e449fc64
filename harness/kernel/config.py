"""Kernel configuration: virtme-ng's minimal config plus our fragments.

``Kconfig.fragment`` is the single source of truth for what the patch and
the tests need.  Kconfig silently drops an option whose dependencies are
not met, so after configuring, every option in the fragments is checked
against the resulting ``.config`` and a missing one fails the build by name.
"""

import hashlib
import re
import subprocess
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.progress import phase

_SET = re.compile(r"^(CONFIG_\w+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")


def parse(text: str) -> dict[str, str]:
    """Options in .config syntax; "is not set" becomes "n"."""
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SET.match(line):
            opts[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            opts[m.group(1)] = "n"
    return opts


def unmet(wanted: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Fragment options the .config does not have, as 'NAME=want (got X)'."""
    bad = []
    for name, want in wanted.items():
        got = actual.get(name, "n")
        if got != want:
            bad.append(f"{name}={want} (got {got if name in actual else 'unset'})")
    return bad


def fingerprint(fragments: list[Path]) -> str:
    h = hashlib.sha256()
    for f in fragments:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def configure(tree: Path, fragments: list[Path], log: Path, stamp: Path) -> None:
    """Write tree/.config from vng's minimal config and *fragments*, then verify it.

    Skipped when the fragments are unchanged since the last run, so an
    up-to-date tree is not touched and nothing is rebuilt.
    """
    fp = fingerprint(fragments)
    config = tree / ".config"
    if not (config.exists() and stamp.exists() and stamp.read_text() == fp):
        cmd = ["vng", "--kconfig"]
        for f in fragments:
            cmd += ["--config", str(f)]
        with phase("configuring (vng --kconfig + " + " + ".join(f.name for f in fragments) + ")"):
            with log.open("w") as fh:
                r = subprocess.run(cmd, cwd=tree, stdout=fh, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=paths.tool_env())
            if r.returncode != 0:
                raise HarnessError(f"vng --kconfig failed (exit {r.returncode})",
                                   f"see {log}")
    wanted: dict[str, str] = {}
    for f in fragments:
        wanted.update(parse(f.read_text()))
    bad = unmet(wanted, parse(config.read_text()))
    if bad:
        stamp.unlink(missing_ok=True)
        raise HarnessError("kernel config options did not take effect: " + ", ".join(bad),
                           "their dependencies are unmet; fix the fragment")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fp)
