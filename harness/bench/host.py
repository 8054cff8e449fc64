"""``python -m harness bench``: boot the patched kernel, measure inside, render here.

The measuring happens in the VM (it needs the patched KVM); the rendering
happens on the host (matplotlib under TCG would cost seconds for nothing,
and the host knows what the guest cannot: the kernel-patch series, the
accelerator, the real CPU).  Old outputs are deleted first, so a run that
fails leaves no stale table that looks current.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

from harness import paths
from harness.bench import report, targets
from harness.bench.measure import RAW, measure
from harness.errors import HarnessError
from harness.kernel.pipeline import Kernel
from harness.progress import phase, say
from harness.vm.boot import BootOptions
from harness.vm.session import LOAD_KVM, Session
from payload.bench import modes
from payload.bench.modes import runner_timeout
from payload.cpu import cpu_model
from payload.native import build as native_build


def qemu_version() -> str:
    """``QEMU emulator version ...`` of the QEMU on PATH, for the record."""
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True, timeout=10, env=paths.tool_env()).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def _clear(out_dir: Path) -> None:
    for name in (RAW, *report.OUTPUTS):
        (out_dir / name).unlink(missing_ok=True)


def measure_in_guest(kernel: Kernel, opts: BootOptions, n: int, trials: int,
                     raw_path: Path) -> dict[str, Any]:
    """Boot, load KVM and the doorbell, run the runner; the raw data, also in ``raw_path``.

    The native KVM_RUN loop is compiled here first and its cache directory
    shared writable with the guest, where the same root filesystem makes
    the host's build valid: compiling it under TCG would cost seconds.
    """
    native = opts.cache / "native"  # where the guest's payload looks (Session.python)
    native_build.build(out_dir=native)
    opts = dataclasses.replace(opts, rwdirs=[*opts.rwdirs, native])
    load = (LOAD_KVM, f"grep -q '^doorbell ' /proc/modules || insmod {kernel.doorbell_ko}")
    with (Session(Path(kernel.tree), opts, setup=load) as s,
          phase(f"measuring {len(modes.MODES)} modes x {trials} trials x {n} writes")):
        return measure(s, n, trials, raw_path, runner_timeout(n, trials))


def run(kernel: Kernel, opts: BootOptions, n: int, trials: int, strict: bool = False,
        out_dir: Path = paths.RESULTS) -> int:
    """The whole ``make bench``; returns the exit status."""
    if n < 1 or trials < 1:
        raise HarnessError("--iterations and --trials must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    raw_path = out_dir / RAW
    load_before = os.getloadavg()[0]
    raw = measure_in_guest(kernel, opts, n, trials, raw_path)
    env: dict[str, Any] = {
        # The build machine is shared: a loaded host inflates and scatters
        # every row, so the record says how loaded it was.
        "host_load": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2),
                      "cpus": os.cpu_count()},
        "series": kernel.series,
        "accel": opts.accel.accel,
        "accel_reason": opts.accel.reason,
        "host_cpu": cpu_model(),
        "qemu": qemu_version(),
    }
    with phase("rendering bench.json, bench.md and bench.png"):
        bench = report.render(raw, env, out_dir)
    print(report.terminal(bench))
    print(f"\nwritten: {', '.join(str(out_dir / f) for f in report.OUTPUTS)} (raw: {raw_path})")
    missed = targets.misses(bench["targets"])
    if missed:
        say(f"{len(missed)} target(s) missed: {'; '.join(m['rule'] for m in missed)}")
        return 1 if strict else 0
    say("every target met")
    return 0
