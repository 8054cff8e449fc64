"""Run the benchmark runner on a machine (the test VM, an SSH host) and fetch its raw data.

Judging and rendering are left to the caller: the verdict is made once,
on what this fetched (:func:`payload.vmexit.checks.verify`, which
:func:`harness.bench.summary.summarize` applies before any number is
reported); each caller knows what the record says about where it was
measured, and the VM's caller renders only once the VM is down, so
matplotlib does not compete with QEMU for the host's cores.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from harness.machine import Machine
from harness.progress import say

RAW = "raw.json"
DEVICE_RAW = "raw-device.json"
"""The doorbell-bank scenario's output (:mod:`payload.device.runner`), as
the guest wrote it."""


def _run_and_fetch(machine: Machine, module_and_args: str, remote: str, raw: Path,
                   timeout: float, what: str, program: str) -> dict[str, Any]:
    """Run a payload module there that writes JSON to *remote* and exits 0;
    the JSON, also written to *raw* here.  Any other exit status is a
    failure of the run, not a verdict: "*program* failed".  *what* names
    the step in a timeout."""
    r = machine.run(machine.python(module_and_args), timeout, what=what)
    for line in r.stderr.splitlines():
        say(f"{machine.label}: {line}")
    if r.rc != 0:
        raise machine.failure(f"{program} failed", r.rc, r.stderr.strip() or r.stdout.strip())
    machine.get(remote, raw)
    return json.loads(raw.read_text())


def measure(machine: Machine, n: int, trials: int, raw: Path, timeout: float,
            array: bool = True) -> dict[str, Any]:
    """Run *trials* trials of *n* writes per mode there (and, with *array*,
    the 1024-doorbell array); the raw data, unjudged, also written to *raw*
    here (kept, to look at, whatever the verdict on it)."""
    remote = f"{machine.scratch}/{RAW}"
    return _run_and_fetch(machine, f"payload.vmexit.runner --iterations {n} --trials {trials} "
                                   f"{'' if array else '--no-array '}--out {shlex.quote(remote)}",
                          remote, raw, timeout, "the benchmark", "the benchmark runner")


def measure_device(machine: Machine, writes: int, rounds: int, raw: Path,
                   timeout: float) -> dict[str, Any]:
    """Run the doorbell-bank scenario there (``python -m payload.device``);
    its output, unjudged, also written to *raw* here.  Its stdout (the same
    JSON) is dropped: the file is what is fetched."""
    remote = f"{machine.scratch}/{DEVICE_RAW}"
    return _run_and_fetch(machine, f"payload.device --writes {writes} --rounds {rounds} "
                                   f"--out {shlex.quote(remote)} >/dev/null",
                          remote, raw, timeout, "the doorbell-bank scenario",
                          "the doorbell-bank scenario")
