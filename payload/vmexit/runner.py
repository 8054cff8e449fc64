"""Guest-side benchmark: ``python -m payload.vmexit.runner --iterations N --trials T --out F``.

Runs as root inside the test VM, where /dev/kvm and /dev/doorbell are.
Modes are interleaved round by round, in a Williams design
(:func:`payload.stats.run_order`): over as many rounds as modes, each mode
runs once in every place and right after every other mode once, so slow
drift in the emulator (caches, host load) spreads over every mode instead
of biasing whichever ran last, and no mode always runs right after the same
neighbour.  The host pairs the
modes' trials of one round, taken seconds apart, to judge its targets.
Each mode first runs one untimed warm-up of the same program: it faults in
guest memory and the MMIO SPTE caches, and proves the mode's counts are
right before any time is spent measuring.  After the last round every
eventfd mode proves which ioctl registered it (:meth:`Rig.prove_path`),
and once the rigs are gone the 1024-doorbell array is registered both ways
(:mod:`payload.vmexit.doorbells`).

The scale rows run in the same rounds as every other mode, so each pairs
with its 0-registration row round by round.

The KVM_RUN loop is the native C one: a Python loop costs more per exit
than the exit itself under TCG and would flatter every in-kernel mode.

The runner makes no verdict: it runs and writes the raw file, and the
checks are :func:`payload.vmexit.checks.verify`'s, made once on the host
(:mod:`harness.bench.summary`) before any number is reported.  The one
check it applies itself is to the warm-ups, which only it sees: a mode
whose warm-up counts are off stops it before the trials (a broken mode
would only waste their time), and the breaches go into the raw file's
``warmup_problems`` for the verdict.

Exit status: 0 when it ran and wrote the raw file, 2 when the environment
cannot run the benchmark at all.
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

from payload.cpu import cpu_model
from payload.cpu import vendor as cpu_vendor
from payload.doorbell import DEFAULT_PATH as DOORBELL_PATH
from payload.errors import CANNOT_RUN, cannot_run
from payload.kvm import uapi
from payload.kvm.vmm import Vm
from payload.vmexit import checks, doorbells, modes
from payload.vmexit.rig import Rig

RAW_SCHEMA = 4
"""2: trials carry ``done_value`` and ``buffer``; the record has ``rounds``
(each round's run order) and ``paths`` (each eventfd mode's path proof).
3: trials carry ``status``; the scale rows are modes; the record has
``array`` (the doorbell array, None when not measured).
4: ``problems`` (every check the runner made) is ``warmup_problems`` (the
warm-ups' breaches only: every other check is the host's)."""


def preflight(names: Sequence[str] = modes.ALL_NAMES) -> str | None:
    """Why this machine cannot run the benchmark's ``names``, or None if it can."""
    hypercalls = [name for name in names if modes.get(name).hypercall]
    if hypercalls and cpu_vendor() == "unknown":
        return f"{', '.join(hypercalls)}: neither an AMD nor an Intel CPU, no hypercall instruction"
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist: load kvm_amd or kvm_intel"
    if not os.path.exists(DOORBELL_PATH):
        return f"{DOORBELL_PATH} does not exist: insmod doorbell.ko"
    with Vm() as vm:
        # Without KVM_IOFD (the unpatched base) only the other modes can run:
        # upstream's, for the io bus's own lookup cost.
        iofds = [name for name in names if modes.get(name).registration == "KVM_IOFD"]
        if iofds and not vm.check_extension(uapi.KVM_CAP_IOFD):
            return (f"{', '.join(iofds[:3])}{' ...' if len(iofds) > 3 else ''}: "
                    "KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is 0, this is not the patched kernel")
        if not vm.kvm_check_extension(uapi.KVM_CAP_IOEVENTFD):
            return "KVM_CAP_IOEVENTFD is 0: no upstream baseline to compare with"
        if "hc" in names and not vm.check_extension(uapi.KVM_CAP_HYPERV_EVENTFD):
            return "KVM_CAP_HYPERV_EVENTFD is 0 (CONFIG_KVM_HYPERV off?): no hc mode"
    return None


def measure(n: int, trials: int, names: Sequence[str] = modes.ALL_NAMES,
            say: Callable[[str], None] = lambda s: None, array: bool = True) -> dict[str, Any]:
    """Warm up and check each mode, ``trials`` rotated rounds (none when a
    warm-up is off), the path proofs, then (with ``array``) the doorbell array.

    Returns the raw record (see :func:`harness.bench.summary.summarize`),
    unjudged but for ``warmup_problems``: :func:`payload.vmexit.checks.verify`
    judges it.
    """
    selected = [modes.get(name) for name in names]
    runs: list[dict[str, Any]] = []
    rounds: list[list[str]] = []
    paths: dict[str, Any] = {}
    warmup_problems: list[str] = []
    with ExitStack() as stack:
        t0 = time.monotonic()
        rigs = {mode.name: stack.enter_context(Rig(mode, n)) for mode in selected}
        say(f"{len(rigs)} VMs set up in {time.monotonic() - t0:.1f} s "
            f"({sum(m.others for m in selected)} other registrations for the scale rows)")
        for rig in rigs.values():
            warm = dataclasses.asdict(rig.run(trial=-1))
            warmup_problems += checks.trial_problems(warm, n)
        if warmup_problems:  # a broken mode would only waste the trials' time
            say("warm-up counts are off; not measuring")
        else:
            for t in range(trials):
                t0 = time.monotonic()
                rounds.append(modes.run_order(list(rigs), t))
                for name in rounds[-1]:
                    runs.append(dataclasses.asdict(rigs[name].run(trial=t)))
                say(f"round {t + 1}/{trials} done in {time.monotonic() - t0:.1f} s")
        for name, rig in rigs.items():
            proof = rig.prove_path()
            if proof is not None:
                paths[name] = proof
    record = None
    if array:
        t0 = time.monotonic()
        record = doorbells.measure()
        say(f"doorbell array measured in {time.monotonic() - t0:.1f} s")
    return {
        "raw_schema": RAW_SCHEMA,
        "kernel": os.uname().release,
        "guest_cpu": cpu_model(),
        "vcpus": 1,
        "iterations": n,
        "trials": trials,
        "access_size": modes.ACCESS_SIZE,
        "modes": [m.name for m in selected],
        "rounds": rounds,
        "runs": runs,
        "paths": paths,
        "array": record,
        "warmup_problems": warmup_problems,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m payload.vmexit.runner",
                                description=__doc__.splitlines()[0])
    p.add_argument("--iterations", "-n", type=int, default=modes.DEFAULT_ITERATIONS,
                   help=f"guest writes per trial (default {modes.DEFAULT_ITERATIONS})")
    p.add_argument("--trials", "-t", type=int, default=modes.DEFAULT_TRIALS,
                   help=f"trials per mode (default {modes.DEFAULT_TRIALS})")
    p.add_argument("--modes", default=",".join(modes.ALL_NAMES),
                   help="comma-separated subset, in run order (default: all, scale rows included)")
    p.add_argument("--no-array", action="store_true",
                   help="skip the 1024-doorbell array measurement")
    p.add_argument("--out", type=Path, required=True, help="raw JSON to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.iterations < 1 or args.trials < 1:
        print("error: --iterations and --trials must be at least 1", file=sys.stderr)
        return CANNOT_RUN

    def say(msg: str) -> None:
        print(f"runner: {msg}", file=sys.stderr, flush=True)

    names = [name for name in args.modes.split(",") if name]
    refused = cannot_run(lambda: preflight([modes.get(name).name for name in names]))
    if refused is not None:
        return refused
    say(f"{len(names)} modes x {args.trials} trials x {args.iterations} writes")
    raw = measure(args.iterations, args.trials, names, say, array=not args.no_array)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(raw, indent=1) + "\n")
    say(f"raw data in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
