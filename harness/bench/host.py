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
from harness.bench import gate, icount, report, targets
from harness.bench.measure import DEVICE_RAW, RAW, measure, measure_device
from harness.errors import HarnessError
from harness.kernel.pipeline import Kernel
from harness.progress import phase, say
from harness.vm import boot, session
from harness.vm.boot import BootOptions
from payload.cpu import cpu_model
from payload.device import model as device_model
from payload.native import bank as bank_loop
from payload.native import build as native_build
from payload.vmexit import modes
from payload.vmexit.modes import runner_timeout


def qemu_version() -> str:
    """``QEMU emulator version ...`` of the QEMU on PATH, for the record."""
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True, timeout=10, env=paths.tool_env()).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


ICOUNT_RAW, ICOUNT_DEVICE_RAW = "raw-icount.json", "raw-device-icount.json"


def _clear(out_dir: Path) -> None:
    for name in (RAW, DEVICE_RAW, ICOUNT_RAW, ICOUNT_DEVICE_RAW, *report.OUTPUTS):
        (out_dir / name).unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class DeviceSize:
    """The doorbell-bank scenario's size in ``make bench``: the scenario's
    own defaults, about 30 s in the VM (the modes take about 90 s)."""

    writes: int = device_model.DEFAULT_WRITES
    rounds: int = device_model.DEFAULT_ROUNDS


def raw_names(counted: bool) -> tuple[str, str]:
    """The raw files of the wall-clock run, or of the icount run."""
    return (ICOUNT_RAW, ICOUNT_DEVICE_RAW) if counted else (RAW, DEVICE_RAW)


def measure_in_guest(kernel: Kernel, opts: BootOptions, n: int, trials: int,
                     out_dir: Path, device: DeviceSize = DeviceSize()) -> dict[str, Any]:
    """Boot, load KVM and the doorbell, run the modes' runner, then the
    doorbell-bank scenario in the same VM; the modes' raw data (also in
    ``out_dir``/raw.json, raw-icount.json under icount) with the scenario's
    output under ``device`` (also in ``out_dir``/raw-device.json, or
    raw-device-icount.json).

    Both native KVM_RUN loops are compiled here first and their cache
    directory shared writable with the guest, where the same root filesystem
    makes the host's build valid: compiling them under TCG would cost seconds.
    """
    native = opts.cache / "native"  # where the guest's payload looks (Session.python)
    native_build.build(out_dir=native)
    bank_loop.build(out_dir=native)
    opts = dataclasses.replace(opts, rwdirs=[*opts.rwdirs, native])
    modes_raw, device_raw = raw_names(opts.icount)
    how = " under icount (instructions)" if opts.icount else ""
    with session.boot(opts, kernel, doorbell=True) as s:
        with phase(f"measuring {len(modes.MODES)} modes and {len(modes.SCALE_MODES)} scale rows "
                   f"x {trials} trials x {n} writes, then the 1024-doorbell array{how}"):
            raw = measure(s, n, trials, out_dir / modes_raw, runner_timeout(n, trials))
        with phase(f"the doorbell-bank scenario: 3 variants x {device.rounds} rounds x "
                   f"{device.writes} doorbell writes{how}"):
            raw["device"] = measure_device(
                s, device.writes, device.rounds, out_dir / device_raw,
                device_model.runner_timeout(device.writes, device.rounds))
    return raw


def count_modes(kernel: Kernel, opts: BootOptions, out_dir: Path, flavour: str,
                n: int = gate.ITERATIONS, trials: int = gate.TRIALS) -> tuple[dict[str, str],
                                                                              dict[str, float]]:
    """The gate's measurement: every mode under icount, no array and no
    device scenario; (the environment the count depends on, mode ->
    instructions per doorbell).  The run is judged by the bench's checks."""
    native = opts.cache / "native"
    native_build.build(out_dir=native)
    opts = dataclasses.replace(boot.counting(opts), rwdirs=[*opts.rwdirs, native])
    with session.boot(opts, kernel, doorbell=True) as s:
        with phase(f"counting instructions: {len(modes.ALL_NAMES)} rows x {trials} trials x "
                   f"{n} writes under icount"):
            raw = measure(s, n, trials, out_dir / ICOUNT_RAW, runner_timeout(n, trials),
                          array=False)
        proc_version = s.run("cat /proc/version").stdout.strip()
    env = gate.environment(raw["kernel"], proc_version, qemu_version(), raw["guest_cpu"],
                           kernel.series, flavour)
    counted = icount.summarize(raw, {"series": kernel.series, "accel": "tcg",
                                     "host_cpu": cpu_model()})
    return env, gate.per_doorbell(counted)


def record_icount(kernel: Kernel, opts: BootOptions, why: str, flavour: str,
                  out_dir: Path = paths.RESULTS) -> int:
    """``--record-icount``: measure as the gate does and rewrite its record,
    saying what changed and why."""
    if not why.strip():
        raise HarnessError("a new instruction-count record needs a reason",
                           'say why with --why "..." (it is kept in the record)')
    out_dir.mkdir(parents=True, exist_ok=True)
    env, measured = count_modes(kernel, opts, out_dir, flavour)
    old = gate.load()
    gate.write(env, measured, why, gate.ITERATIONS, gate.TRIALS)
    say(f"instruction-count record rewritten ({gate.RECORD}), because: {why}")
    for line in gate.changes(old, env, measured):
        say(f"  {line}")
    return 0


def run(kernel: Kernel, opts: BootOptions, n: int, trials: int, strict: bool = False,
        out_dir: Path = paths.RESULTS, device: DeviceSize = DeviceSize()) -> int:
    """The whole ``make bench``; returns the exit status."""
    if n < 1 or trials < 1:
        raise HarnessError("--iterations and --trials must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    load_before = os.getloadavg()[0]
    raw = measure_in_guest(kernel, opts, n, trials, out_dir, device)
    if opts.accel.accel == "tcg":
        # The same VM booted again under icount: the figure the targets are
        # decided on (harness.bench.icount).  A device scenario of fewer
        # rounds: its instruction counts repeat as the modes' do.
        raw["icount"] = measure_in_guest(
            kernel, boot.counting(opts), n, icount.TRIALS, out_dir,
            dataclasses.replace(device, rounds=icount.TRIALS))
    else:
        say("no icount run: QEMU counts instructions only under TCG, so the targets are decided "
            "on wall-clock time")
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
    raws = [RAW, DEVICE_RAW, *((ICOUNT_RAW, ICOUNT_DEVICE_RAW) if "icount" in raw else ())]
    print(f"\nwritten: {', '.join(str(out_dir / f) for f in report.OUTPUTS)} "
          f"(raw: {', '.join(str(out_dir / f) for f in raws)})")
    return verdict(targets.every_target(bench), strict)


def verdict(results: list[dict[str, Any]], strict: bool) -> int:
    """Say how the targets fell; the exit status: 1 only for a miss under
    ``--strict`` (a target the run could not decide is reported, not failed;
    failed checks never get this far)."""
    undecided = targets.straddles(results)
    if undecided:
        say(f"{len(undecided)} target(s) undecided, the limit inside their paired median's "
            f"confidence interval: {'; '.join(m['rule'] for m in undecided)}")
    missed = targets.misses(results)
    if missed:
        say(f"{len(missed)} target(s) missed: {'; '.join(m['rule'] for m in missed)}"
            + ("" if strict else " (exit status 0: --strict makes a miss fail the run)"))
        return 1 if strict else 0
    if not undecided:
        say("every target met")
    return 0
