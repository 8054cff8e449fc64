"""Guest-side benchmark: ``python -m payload.bench.runner --iterations N --trials T --out F``.

Runs as root inside the test VM, where /dev/kvm and /dev/doorbell are.
Modes are interleaved trial by trial (A B C ... A B C ...), so slow drift
in the emulator (caches, host load) spreads over every mode instead of
biasing whichever ran last.  Each mode first runs one untimed warm-up of
the same program: it faults in guest memory and the MMIO SPTE caches, and
proves the mode's counts are right before any time is spent measuring.

The KVM_RUN loop is the native C one: a Python loop costs more per exit
than the exit itself under TCG and would flatter every in-kernel mode.

Exit status: 0 when every trial's counts were exact, 1 when any was not
(the raw file is written either way, with the problems listed in it), 2
when the environment cannot run the benchmark at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from payload.bench import checks, modes
from payload.bench.rig import Rig
from payload.cpu import cpu_model
from payload.doorbell import DEFAULT_PATH as DOORBELL_PATH
from payload.kvm import uapi
from payload.kvm.vmm import Vm

RAW_SCHEMA = 1


def preflight() -> str | None:
    """Why this machine cannot run the benchmark, or None if it can."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist: load kvm_amd or kvm_intel"
    if not os.path.exists(DOORBELL_PATH):
        return f"{DOORBELL_PATH} does not exist: insmod doorbell.ko"
    with Vm() as vm:
        if not vm.check_extension(uapi.KVM_CAP_IOFD):
            return "KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is 0: this is not the patched kernel"
        if not vm.kvm_check_extension(uapi.KVM_CAP_IOEVENTFD):
            return "KVM_CAP_IOEVENTFD is 0: no upstream baseline to compare with"
    return None


def measure(n: int, trials: int, names: Sequence[str] = modes.NAMES,
            say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Warm up and check each mode, then ``trials`` interleaved rounds.

    Returns the raw record (see :func:`harness.bench.summary.summarize`);
    ``problems`` in it lists every count that was off, warm-up included.
    """
    selected = [modes.get(name) for name in names]
    runs: list[dict[str, Any]] = []
    problems: list[str] = []
    with ExitStack() as stack:
        rigs = [stack.enter_context(Rig(mode, n)) for mode in selected]
        for rig in rigs:
            warm = dataclasses.asdict(rig.run(trial=-1))
            problems += [f"warm-up: {p}" for p in checks.trial_problems(warm, n)]
        if problems:  # a broken mode would only waste the trials' time
            say("warm-up counts are off; not measuring")
        else:
            for t in range(trials):
                t0 = time.monotonic()
                for rig in rigs:
                    trial = dataclasses.asdict(rig.run(trial=t))
                    problems += checks.trial_problems(trial, n)
                    runs.append(trial)
                say(f"trial {t + 1}/{trials} done in {time.monotonic() - t0:.1f} s")
    return {
        "raw_schema": RAW_SCHEMA,
        "kernel": os.uname().release,
        "guest_cpu": cpu_model(),
        "vcpus": 1,
        "iterations": n,
        "trials": trials,
        "access_size": modes.ACCESS_SIZE,
        "modes": [m.name for m in selected],
        "runs": runs,
        "problems": problems,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m payload.bench.runner",
                                description=__doc__.splitlines()[0])
    p.add_argument("--iterations", "-n", type=int, default=modes.DEFAULT_ITERATIONS,
                   help=f"guest writes per trial (default {modes.DEFAULT_ITERATIONS})")
    p.add_argument("--trials", "-t", type=int, default=modes.DEFAULT_TRIALS,
                   help=f"trials per mode (default {modes.DEFAULT_TRIALS})")
    p.add_argument("--modes", default=",".join(modes.NAMES),
                   help="comma-separated subset, in run order (default: all)")
    p.add_argument("--out", type=Path, required=True, help="raw JSON to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.iterations < 1 or args.trials < 1:
        print("error: --iterations and --trials must be at least 1", file=sys.stderr)
        return 2

    def say(msg: str) -> None:
        print(f"runner: {msg}", file=sys.stderr, flush=True)

    try:
        names = [modes.get(name).name for name in args.modes.split(",") if name]
        why = preflight()
    except (ValueError, OSError) as e:
        why = str(e)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    say(f"{len(names)} modes x {args.trials} trials x {args.iterations} writes")
    raw = measure(args.iterations, args.trials, names, say)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(raw, indent=1) + "\n")
    if raw["problems"]:
        print(f"error: {len(raw['problems'])} count check(s) failed:", file=sys.stderr)
        for p in raw["problems"]:
            print(f"  {p}", file=sys.stderr)
        return 1
    say(f"all counts exact; raw data in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
