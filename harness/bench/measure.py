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
DEVICE_RAW = "raw-device.json"
"""The doorbell-bank scenario's output (:mod:`payload.device.runner`), as
the guest wrote it."""


def _run_and_fetch(machine: Machine, module_and_args: str, remote: str, raw: Path,
                   timeout: float, what: str, program: str) -> tuple[int, dict[str, Any]]:
    """Run a payload module there that writes JSON to *remote* and exits 0
    (all checks passed) or 1 (a check failed, the JSON written anyway);
    its exit status and the JSON, also written to *raw* here.  Any other
    exit status is a failure of the run, not a verdict: "*program* failed".
    *what* names the step in a timeout."""
    r = machine.run(machine.python(module_and_args), timeout, what=what)
    for line in r.stderr.splitlines():
        say(f"{machine.label}: {line}")
    if r.rc not in (0, 1):
        raise machine.failure(f"{program} failed", r.rc, r.stderr.strip() or r.stdout.strip())
    machine.get(remote, raw)
    return r.rc, json.loads(raw.read_text())


def measure(machine: Machine, n: int, trials: int, raw: Path, timeout: float) -> dict[str, Any]:
    """Run *trials* trials of *n* writes per mode there; the raw data, also
    written to *raw* here.

    The runner exits 1 when a trial's counts were off, after writing the
    raw data whose ``problems`` say which: that is a :class:`CountMismatch`,
    a verdict on the series; any other failure is one of the run.
    """
    remote = f"{machine.scratch}/{RAW}"
    rc, data = _run_and_fetch(machine, f"payload.bench.runner --iterations {n} --trials {trials} "
                                       f"--out {shlex.quote(remote)}",
                              remote, raw, timeout, "the benchmark", "the benchmark runner")
    if rc == 1:
        raise CountMismatch(data.get("problems") or ["the runner reported a count failure"])
    return data


def measure_device(machine: Machine, writes: int, rounds: int, raw: Path,
                   timeout: float) -> dict[str, Any]:
    """Run the doorbell-bank scenario there (``python -m payload.device``);
    its output, also written to *raw* here.

    Its exit status 1 means a check failed (the output, written anyway,
    lists the problems): a :class:`CountMismatch`, as for the modes.  Its
    targets are left to the host, which judges them with the others.  Its
    stdout (the same JSON) is dropped: the file is what is fetched.
    """
    remote = f"{machine.scratch}/{DEVICE_RAW}"
    rc, data = _run_and_fetch(machine, f"payload.device --writes {writes} --rounds {rounds} "
                                       f"--out {shlex.quote(remote)} >/dev/null",
                              remote, raw, timeout, "the doorbell-bank scenario",
                              "the doorbell-bank scenario")
    if rc == 1:
        raise CountMismatch([f"device: {p}" for p in data.get("problems") or
                             ["the scenario reported a failed check"]])
    return data
