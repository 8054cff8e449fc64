"""Run the benchmark runner on a machine (the test VM, an SSH host) and fetch its raw data.

Rendering is left to the caller: each knows what the record says about
where it was measured, and the VM's caller renders only once the VM is
down, so matplotlib does not compete with QEMU for the host's cores.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from harness.machine import Machine
from harness.progress import say
from payload.bench.checks import CountMismatch

RAW = "raw.json"


def measure(machine: Machine, n: int, trials: int, raw: Path, timeout: float) -> dict[str, Any]:
    """Run *trials* trials of *n* writes per mode there; the raw data, also
    written to *raw* here.

    The runner exits 1 when a trial's counts were off, after writing the
    raw data whose ``problems`` say which: that is a :class:`CountMismatch`,
    a verdict on the series; any other failure is one of the run.
    """
    remote = f"{machine.scratch}/{RAW}"
    r = machine.run(machine.python(f"payload.bench.runner --iterations {n} --trials {trials} "
                                   f"--out {shlex.quote(remote)}"),
                    timeout, what="the benchmark")
    for line in r.stderr.splitlines():
        say(f"{machine.label}: {line}")
    if r.rc not in (0, 1):
        raise machine.failure("the benchmark runner failed", r.rc,
                              r.stderr.strip() or r.stdout.strip())
    machine.get(remote, raw)
    data: dict[str, Any] = json.loads(raw.read_text())
    if r.rc == 1:
        raise CountMismatch(data.get("problems") or ["the runner reported a count failure"])
    return data
