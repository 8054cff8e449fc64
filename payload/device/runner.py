"""The doorbell-bank scenario: ``python -m payload.device [--writes N] [--rounds R]``.

Runs as root where the patched KVM is (the test VM), measures the three
variants of :mod:`payload.device.model` on the same guest work, checks
them, and prints one JSON object on stdout (progress goes to stderr).

How: one VM per variant (:class:`~payload.device.rig.BankRig`), each first
run once untimed (the warm-up: it faults memory in and proves the counts
before any time is spent), then ``rounds`` rounds in which every variant
runs once, the order rotated by one each round (a b c, b c a, c a b, ...).
A run's time is the native loop's wall time from the first KVM_RUN to the
DONE exit; ``ns_per_write`` divides it by the writes.  After the rounds
each variant proves which ioctl registered its doorbells
(:meth:`~payload.device.rig.BankRig.prove_registrations`).

Exit status: 0 when every check passed; 1 when a check failed (or, with
``--strict``, a target was missed); 2 when this machine cannot run it.
Targets never fail a run without ``--strict``.

Output (schema 1; within a schema no key is removed or renamed, and every
key listed is always present).  The top-level object::

  schema            1
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
  checks            [{"name", "variant", "value", "expected", "ok"}]: exits per
                    run, signals per run, runs whose consumed tails equal the
                    guest's last writes, registrations, runs without problems
  targets           [{"rule", "a", "b", "op", "limit", "why", "measured" (paired
                    median), "iqr": [q1, q3], "ratios" (per round),
                    "ratio_of_medians", "pairs", "verdict" (pass, miss,
                    straddle, n/a), "ok" (true, false, null)}]: on ns per run
  targets_less_device  the same, on ns - device_cpu_ns per run: the ratios
                    with the device thread's CPU time taken out (information
                    only: --strict and the verdicts above ignore them)
  problems          [str]: every failed check, in words
  ok                no problems
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
                     write to it), "problems": [str]}
  SPREAD            {"median", "q1", "q3", "min", "max"} (raw, unrounded)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from payload import stats
from payload.cpu import cpu_model
from payload.device import model
from payload.device.rig import BankRig
from payload.guest import queues
from payload.kvm import uapi
from payload.kvm.vmm import Vm

SCHEMA = 1


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


def _check(name: str, variant: str, value: Any, expected: Any) -> dict[str, Any]:
    return {"name": name, "variant": variant, "value": value, "expected": expected,
            "ok": value == expected}


def variant_checks(variant: model.Variant, entry: Mapping[str, Any],
                   writes: int) -> list[dict[str, Any]]:
    """The structured checks of one variant, over its warm-up and runs
    (public: the host re-checks ``make bench``'s raw output with them)."""
    runs = [entry["warmup"], *entry["runs"]]
    exits = sorted({r["userspace_exits"] for r in runs})
    signals = sorted({r["signals"] for r in runs})
    return [
        _check("userspace exits per run", variant.key, exits, [variant.expected_exits(writes)]),
        _check("eventfd signals per run", variant.key, signals, [writes]),
        _check("runs whose consumed tails equal the guest's last writes", variant.key,
               sum(r["tails_ok"] for r in runs), len(runs)),
        _check("registrations", variant.key, entry["path"]["registrations"],
               variant.registrations),
        _check("runs without problems", variant.key, sum(not r["problems"] for r in runs),
               len(runs)),
    ]


def measure(writes: int, rounds: int, seed: int, keys: Sequence[str] = tuple(model.BY_KEY),
            say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Warm up and check each variant, run ``rounds`` rotated rounds, prove
    the registrations, and return the output object (see the module doc)."""
    started = time.monotonic()
    pattern = model.tail_pattern(writes, seed)
    last = model.last_tails(pattern)
    variants = [model.get(k) for k in keys]
    out: dict[str, Any] = {
        "schema": SCHEMA, "scenario": "doorbell-bank", "kernel": os.uname().release,
        "guest_cpu": cpu_model(), "vcpus": 1, "queues": queues.QUEUES,
        "doorbell_bytes": queues.DOORBELL_STRIDE, "writes": writes, "seed": seed,
        "rounds": rounds,
        "pattern": {"max_tail": max(last, default=0), "entries": sum(last),
                    "queues_written": sum(t > 0 for t in last)},
        "b_eventfds": "shared", "order": [], "variants": {}, "checks": [], "targets": [],
        "targets_less_device": [], "problems": [], "ok": False, "seconds": 0.0,
    }
    problems: list[str] = out["problems"]
    with ExitStack() as stack:
        rigs = {v.key: stack.enter_context(BankRig(v, pattern)) for v in variants}
        for v in variants:
            entry = {"name": v.name, "what": v.what, "registrations": v.registrations,
                     "ioctl": v.ioctl, "guest_cooperation": v.shadow,
                     "warmup": rigs[v.key].run(-1), "runs": []}
            out["variants"][v.key] = entry
            problems += [f"({v.key}) warm-up: {p}" for p in entry["warmup"]["problems"]]
        if problems:
            say("warm-up checks failed; not measuring")
        else:
            for r in range(rounds):
                t0 = time.monotonic()
                order = stats.rotated([v.key for v in variants], r)
                out["order"].append(order)
                for key in order:
                    run = rigs[key].run(r)
                    out["variants"][key]["runs"].append(run)
                    problems += [f"({key}) round {r}: {p}" for p in run["problems"]]
                say(f"round {r + 1}/{rounds} done in {time.monotonic() - t0:.1f} s")
        for v in variants:
            entry = out["variants"][v.key]
            entry["path"] = rigs[v.key].prove_registrations()
            problems += model.path_problems(v, entry["path"])
    for v in variants:
        entry = out["variants"][v.key]
        entry["runs"].sort(key=lambda run: run["round"])
        entry["summary"] = _summary(entry["runs"])
        out["checks"] += variant_checks(v, entry, writes)
    out["targets"] = evaluate_targets(out["variants"])
    out["targets_less_device"] = evaluate_targets(out["variants"], less_device=True)
    problems += [f"check failed: ({c['variant']}) {c['name']}: {c['value']}, expected "
                 f"{c['expected']}" for c in out["checks"] if not c["ok"]]
    out["ok"] = not problems
    out["seconds"] = time.monotonic() - started
    return out


def evaluate_targets(variants: Mapping[str, Mapping[str, Any]],
                     less_device: bool = False) -> list[dict[str, Any]]:
    """Every :data:`model.TARGETS` entry from the variants' timed runs (the
    output's ``variants``): on each run's ns, or with ``less_device`` on ns
    less the device thread's CPU time (public: the host re-evaluates
    ``make bench``'s raw output with it)."""
    per_round = {key: {run["round"]: run["ns"] - (run["device_cpu_ns"] if less_device else 0)
                       for run in entry["runs"]}
                 for key, entry in variants.items()}
    return [stats.evaluate(t, per_round) for t in model.TARGETS]


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
                   help="comma-separated subset of a,b,c (default: all); targets need two")
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def say(msg: str) -> None:
        print(f"device: {msg}", file=sys.stderr, flush=True)

    if not 1 <= args.writes <= queues.max_writes(True) or args.rounds < 1:
        print(f"error: --writes must be 1..{queues.max_writes(True)} and --rounds at least 1",
              file=sys.stderr)
        return 2
    try:
        keys = [model.get(k).key for k in args.variants.split(",") if k]
        why = preflight()
    except (ValueError, OSError) as e:
        why = str(e)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    say(f"{len(keys)} variants x {args.rounds} rounds x {args.writes} doorbell writes")
    out = measure(args.writes, args.rounds, args.seed, keys, say)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    for p in out["problems"]:
        say(f"problem: {p}")
    for key, entry in out["variants"].items():
        s = entry["summary"]
        if s["ns_per_write"] is not None:
            say(f"({key}) {entry['name']}: {s['ns_per_write']['median'] / 1e3:.1f} us/write "
                f"({s['ns_per_write_less_device']['median'] / 1e3:.1f} less the device's CPU), "
                f"{s['userspace_exits']['median']:.0f} exits, {s['wakeups']['median']:.0f} "
                f"wakeups per run, {entry['path']['registrations']} registrations")
    missed = [t["rule"] for t in out["targets"] if t["verdict"] == stats.MISS]
    for t in out["targets"]:
        iqr = "-" if t["iqr"] is None else f"{t['iqr'][0]:.3f}..{t['iqr'][1]:.3f}"
        measured = "-" if t["measured"] is None else f"{t['measured']:.3f}"
        say(f"target {t['rule']}: {measured} (IQR {iqr}) {t['verdict']}")
    if out["problems"]:
        return 1
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
