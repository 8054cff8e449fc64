"""The doorbell-bank scenario: ``python -m payload.device [--writes N] [--rounds R]``.

Runs as root where the patched KVM is (the test VM), measures the three
variants of :mod:`payload.device.model` on the same guest work and prints
one JSON object on stdout (progress goes to stderr).  It makes no verdict:
the checks on the output are :func:`payload.device.checks.output_checks`,
which ``make bench`` applies on the host (through
:func:`payload.vmexit.checks.verify`), and the targets are the host's
(:mod:`harness.bench.targets`).  Each run's own problems (what the device
thread and KVM_RUN saw, which only the run has) are recorded in it by the rig.

How: one VM per variant (:class:`~payload.device.rig.BankRig`), each first
run once untimed (the warm-up: it faults memory in and proves the counts
before any time is spent), then ``rounds`` rounds in which every variant
runs once, in the order :func:`payload.stats.run_order` gives (a Williams
design: a b c, c a b, b c a, then reversed: c b a, ...).
A run's time is the native loop's wall time from the first KVM_RUN to the
DONE exit; ``ns_per_write`` divides it by the writes.  After the rounds
each variant proves which ioctl registered its doorbells
(:meth:`~payload.device.rig.BankRig.prove_registrations`).

Exit status: 0 when it ran and wrote its output (a warm-up with problems
stops it before the rounds, and says so); 2 when this machine cannot run it.

Output (schema 2; within a schema no key is removed or renamed, and every
key listed is always present).  The top-level object::

  schema            2
  scenario          "doorbell-bank"
  kernel            uname release
  guest_cpu         /proc/cpuinfo model name
  vcpus             1 (the L2 guest's)
  queues            64
  doorbell_bytes    4
  writes            the guest's doorbell writes per run
  seed              the write pattern's seed
  rounds            timed rounds (the warm-up is not one)
  pattern           {"max_tail", "entries" (sum of last tails), "queues_written"}
  b_eventfds        "shared": (b)'s 64 ioeventfds signal one eventfd (rig.py says why)
  order             [[variant key, ...] per round]: each round's run order
  variants          {"a": VARIANT, "b": VARIANT, "c": VARIANT} (those run)
  seconds           the whole measurement's wall time

where::

  VARIANT           {"name" (e.g. "iofd-buffer"), "what" (a sentence),
                     "registrations" (0, 64, 1), "ioctl" ("KVM_IOEVENTFD",
                     "KVM_IOFD" or null), "guest_cooperation" (true for (b)),
                     "warmup": RUN (untimed), "runs": [RUN per round, in round
                     order], "summary", "path"}
  summary           {"ns_per_write", "ns_per_write_less_device", "wakeups",
                     "userspace_exits", "signals", "device_cpu_share"
                     (device_cpu_ns / ns)}: a SPREAD each,
                     over the timed runs (null each if none ran)
  path              {"ioctl", "removed": {ioctl: n}, "errors": {ioctl: [errno]},
                     "registrations": n}: the deassign proof
  RUN               {"round", "ns", "ns_per_write", "userspace_exits" (KVM_RUN
                     exits, DONE included), "doorbell_exits", "stray_exits",
                     "kicks" (VMM eventfd writes), "kvm_runs", "interrupted",
                     "end", "done_value", "wakeups" (eventfd reads > 0),
                     "signals" (their sum), "device_cpu_ns" (the device
                     thread's CPU time: with one CPU, as in the test VM, time
                     the guest did not run), "ns_per_write_less_device" ((ns -
                     device_cpu_ns) / writes), "queue_moves", "entries_consumed",
                     "tails_ok" (every queue consumed up to the guest's last
                     write to it by the signalled wakeups, before the drain
                     after the run), "problems": [str] (what the rig found wrong
                     with this run, in words)}
  SPREAD            {"median", "q1", "q3", "min", "max"} (raw, unrounded)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from payload import stats
from payload.cpu import cpu_model
from payload.device import checks, model
from payload.device.rig import BankRig
from payload.errors import CANNOT_RUN, cannot_run
from payload.guest import queues
from payload.kvm import uapi
from payload.kvm.vmm import Vm


def preflight() -> str | None:
    """Why this machine cannot run the scenario, or None if it can."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist: load kvm_amd or kvm_intel"
    with Vm() as vm:
        if not vm.check_extension(uapi.KVM_CAP_IOFD):
            return "KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is 0: this is not the patched kernel"
        if not vm.kvm_check_extension(uapi.KVM_CAP_IOEVENTFD):
            return "KVM_CAP_IOEVENTFD is 0: no shadow-doorbell variant to compare with"
    return None


def _summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    keys = ("ns_per_write", "ns_per_write_less_device", "wakeups", "userspace_exits", "signals",
            "device_cpu_share")
    if not runs:
        return dict.fromkeys(keys)
    values = {k: [r[k] for r in runs] for k in keys[:-1]}
    values["device_cpu_share"] = [r["device_cpu_ns"] / r["ns"] if r["ns"] else 0.0 for r in runs]
    return {k: stats.spread_dict(v) for k, v in values.items()}


def measure(writes: int, rounds: int, seed: int, keys: Sequence[str] = tuple(model.BY_KEY),
            say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Warm up each variant, run ``rounds`` rotated rounds (none when a
    warm-up recorded problems: the run would only confirm them), prove the
    registrations, and return the output object (see the module doc)."""
    started = time.monotonic()
    pattern = model.tail_pattern(writes, seed)
    last = model.last_tails(pattern)
    variants = [model.get(k) for k in keys]
    out: dict[str, Any] = {
        "schema": checks.SCHEMA, "scenario": "doorbell-bank", "kernel": os.uname().release,
        "guest_cpu": cpu_model(), "vcpus": 1, "queues": queues.QUEUES,
        "doorbell_bytes": queues.DOORBELL_STRIDE, "writes": writes, "seed": seed,
        "rounds": rounds,
        "pattern": {"max_tail": max(last, default=0), "entries": sum(last),
                    "queues_written": sum(t > 0 for t in last)},
        "b_eventfds": "shared", "order": [], "variants": {}, "seconds": 0.0,
    }
    with ExitStack() as stack:
        rigs = {v.key: stack.enter_context(BankRig(v, pattern)) for v in variants}
        for v in variants:
            entry = {"name": v.name, "what": v.what, "registrations": v.registrations,
                     "ioctl": v.ioctl, "guest_cooperation": v.shadow,
                     "warmup": rigs[v.key].run(-1), "runs": []}
            out["variants"][v.key] = entry
        if any(entry["warmup"]["problems"] for entry in out["variants"].values()):
            say("a warm-up run has problems; not measuring")
        else:
            for r in range(rounds):
                t0 = time.monotonic()
                order = stats.run_order([v.key for v in variants], r)
                out["order"].append(order)
                for key in order:
                    run = rigs[key].run(r)
                    out["variants"][key]["runs"].append(run)
                say(f"round {r + 1}/{rounds} done in {time.monotonic() - t0:.1f} s")
        for v in variants:
            entry = out["variants"][v.key]
            entry["path"] = rigs[v.key].prove_registrations()
    for entry in out["variants"].values():
        entry["runs"].sort(key=lambda run: run["round"])
        entry["summary"] = _summary(entry["runs"])
    out["seconds"] = time.monotonic() - started
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m payload.device",
        description="The doorbell-bank device scenario (issue 16): 64 NVMe-style tail doorbells "
                    "served (a) in userspace, (b) by QEMU NVMe's shadow doorbells with 64 "
                    "ioeventfds, (c) by one KVM_IOFD with a buffer.  Prints JSON (schema in "
                    "payload/device/runner.py's docstring).")
    p.add_argument("--writes", "-n", type=int, default=model.DEFAULT_WRITES,
                   help=f"guest doorbell writes per run (default {model.DEFAULT_WRITES}, "
                        f"at most {queues.max_writes(True)})")
    p.add_argument("--rounds", "-r", type=int, default=model.DEFAULT_ROUNDS,
                   help=f"timed rounds (default {model.DEFAULT_ROUNDS})")
    p.add_argument("--seed", type=int, default=model.DEFAULT_SEED,
                   help=f"the write pattern's seed (default {model.DEFAULT_SEED})")
    p.add_argument("--variants", default=",".join(model.BY_KEY),
                   help="comma-separated subset of a,b,c (default: all)")
    p.add_argument("--out", help="also write the JSON to this file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def say(msg: str) -> None:
        print(f"device: {msg}", file=sys.stderr, flush=True)

    if not 1 <= args.writes <= queues.max_writes(True) or args.rounds < 1:
        print(f"error: --writes must be 1..{queues.max_writes(True)} and --rounds at least 1",
              file=sys.stderr)
        return CANNOT_RUN
    keys: list[str] = []

    def check() -> str | None:
        keys.extend(model.get(k).key for k in args.variants.split(",") if k)
        return preflight()

    refused = cannot_run(check)
    if refused is not None:
        return refused
    say(f"{len(keys)} variants x {args.rounds} rounds x {args.writes} doorbell writes")
    out = measure(args.writes, args.rounds, args.seed, keys, say)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    for key, entry in out["variants"].items():
        s = entry["summary"]
        if s["ns_per_write"] is not None:
            say(f"({key}) {entry['name']}: {s['ns_per_write']['median'] / 1e3:.1f} us/write "
                f"({s['ns_per_write_less_device']['median'] / 1e3:.1f} less the device's CPU), "
                f"{s['userspace_exits']['median']:.0f} exits, {s['wakeups']['median']:.0f} "
                f"wakeups per run, {entry['path']['registrations']} registrations")
    return 0

if __name__ == "__main__":
    sys.exit(main())
