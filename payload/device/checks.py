"""The doorbell-bank scenario's checks, pure: what one run did, and what
the scenario's whole output must show.

Two kinds, by where their data is:

* per run, on what only the run itself saw (the device thread's loads,
  KVM_RUN's counts): :func:`device_problems` and :func:`vmm_problems`,
  which the rig (:mod:`payload.device.rig`) applies as it runs and records
  in the run's ``problems``;
* on the output as written (:func:`output_checks`): every variant ran, each
  one's exits, signals, consumed tails, registrations and recorded run
  problems (:func:`variant_checks`), and its deassign proof
  (:func:`path_problems`).  The runner only writes the output; the verdict
  is made once, on the host, by :func:`payload.vmexit.checks.verify`, which
  calls this.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from payload.device import model
from payload.device.model import Consumer, DeviceRecord, Variant, last_tails, written_tails
from payload.guest.queues import QUEUES

SCHEMA = 2
"""The version of the scenario's output (:mod:`payload.device.runner` documents
it) these checks read.  2: the output is measurements only (schema 1 also
had the guest's ``checks``, ``targets``, ``targets_less_device``,
``problems`` and ``ok``)."""

MAX_LISTED = 5
"""Problems of one kind listed per run before the rest are counted."""


def _capped(kind: str, items: list[str]) -> list[str]:
    if len(items) <= MAX_LISTED:
        return items
    return [*items[:MAX_LISTED], f"... and {len(items) - MAX_LISTED} more {kind}"]


def consumer_problems(consumer: Consumer, pattern: Sequence[tuple[int, int]]) -> list[str]:
    """Nothing lost, nothing consumed twice, nothing made up.

    * every queue's consumed tail is the guest's last write to it;
    * no tail was ever loaded below what was consumed (no entry twice);
    * every tail consumed up to is one the guest wrote to that queue (so
      not a torn or stray load);
    * the entries consumed add up to the sum of the last tails.
    """
    problems: list[str] = []
    last = last_tails(pattern, consumer.queues)
    written = [set(ts) for ts in written_tails(pattern, consumer.queues)]
    problems += _capped("lost", [
        f"queue {q}: consumed up to {consumer.consumed[q]}, the guest's last write was {last[q]}"
        for q in range(consumer.queues) if consumer.consumed[q] != last[q]])
    problems += _capped("regressions", [
        f"queue {q}: loaded tail {t} below the consumed {c} (would consume entries twice)"
        for q, c, t in consumer.regressions])
    problems += _capped("made-up tails", [
        f"queue {q}: consumed up to {t}, which the guest never wrote to it"
        for q in range(consumer.queues) for t in consumer.history[q] if t not in written[q]])
    if consumer.entries != sum(last):
        problems.append(f"consumed {consumer.entries} entries, the guest submitted {sum(last)}")
    return problems


def ordering_problems(snapshots: Sequence[tuple[int, Sequence[int]]],
                      pattern: Sequence[tuple[int, int]], queues: int = QUEUES) -> list[str]:
    """The Ordering rule of api.rst 4.146, for a whole array of registers.

    One vCPU writes in pattern order and each write's tail is stored (in the
    register buffer, the shadow array or the VMM's array) before its signal
    is counted.  So once the eventfd reads have returned ``n`` signals in
    all, every queue's loaded tail is at least its tail after the pattern's
    first ``n`` writes.  A load below that is a tail the device could miss.
    """
    floor = [0] * queues  # each queue's tail after the first `done` writes
    done = 0
    problems = []
    for signals, tails in sorted(snapshots, key=operator.itemgetter(0)):
        for queue, tail in pattern[done:signals]:
            floor[queue] = tail
        done = max(done, min(signals, len(pattern)))
        if any(map(operator.lt, tails, floor)):  # the common case stays in C
            problems += [f"after {signals} signals queue {q} loaded {t}, but an earlier "
                         f"write had stored {f}"
                         for q, (t, f) in enumerate(zip(tails, floor, strict=True)) if t < f]
    return _capped("ordering violations", problems)


def device_problems(record: DeviceRecord, pattern: Sequence[tuple[int, int]]) -> list[str]:
    """Every check on what the device thread saw in one run."""
    writes = len(pattern)
    problems = []
    if record.signals != writes:
        problems.append(f"the eventfd counted {record.signals} signals for {writes} doorbell writes")
    if writes and not 1 <= record.wakeups <= record.signals:
        problems.append(f"{record.wakeups} device wakeups for {record.signals} signals")
    last = last_tails(pattern, record.consumer.queues)
    if record.consumed_by_signals != last:
        problems += _capped("tails only the drain found", [
            f"queue {q}: the signalled wakeups consumed up to {c}, the guest's last write was "
            f"{last[q]}" for q, c in enumerate(record.consumed_by_signals or [0] * len(last))
            if c != last[q]])
    if record.final and record.final != last:
        problems.append("the drain loaded tails other than the guest's last writes: "
                        + ", ".join(f"q{q}={t} (want {last[q]})"
                                    for q, t in enumerate(record.final) if t != last[q])[:300])
    problems += consumer_problems(record.consumer, pattern)
    problems += ordering_problems(record.snapshots, pattern, record.consumer.queues)
    return problems


def vmm_problems(variant: Variant, writes: int, *, end: str, done_value: int, exits: int,
                 doorbell_exits: int, stray_exits: int, kicks: int) -> list[str]:
    """Checks on what KVM_RUN returned in one run (the VMM's side)."""
    problems = []
    if end != "done":
        problems.append(f"the guest ended with {end or 'nothing'!r}, not at DONE_PORT")
    elif done_value != writes:
        problems.append(f"the guest reported {done_value} writes at DONE, not {writes}")
    want = variant.expected_exits(writes)
    if exits != want:
        problems.append(f"{exits} userspace exits, expected {want}")
    want_db = writes if variant.exits_per_write else 0
    if doorbell_exits != want_db:
        problems.append(f"{doorbell_exits} doorbell writes reached the VMM, expected {want_db}")
    if kicks != doorbell_exits:
        problems.append(f"the VMM kicked the device {kicks} times for {doorbell_exits} exits")
    if stray_exits:
        problems.append(f"{stray_exits} exits outside the doorbell array")
    return problems


def path_problems(variant: Variant, proof: dict[str, Any]) -> list[str]:
    """The registration proof's verdict: own ioctl removed exactly the
    variant's registrations, the other found none, and every failure was ENOENT."""
    problems = []
    if proof["registrations"] != variant.registrations:
        problems.append(f"{variant.name}: {proof['registrations']} registrations found, "
                        f"{variant.registrations} expected")
    for ioctl, removed in proof["removed"].items():
        if ioctl != variant.ioctl and removed:
            problems.append(f"{variant.name}: {ioctl} removed {removed} registrations, "
                            f"but the variant registers with {variant.ioctl or 'nothing'}")
    for ioctl, names in proof["errors"].items():
        if set(names) - {"ENOENT"}:
            problems.append(f"{variant.name}: {ioctl} deassign failed with {', '.join(names)}")
    return problems


# --- the output ------------------------------------------------------------------------
def _check(name: str, variant: str, value: Any, expected: Any) -> dict[str, Any]:
    return {"name": name, "variant": variant, "value": value, "expected": expected,
            "ok": value == expected}


def variant_checks(variant: Variant, entry: Mapping[str, Any], writes: int) -> list[dict[str, Any]]:
    """The structured checks of one variant, over its warm-up and runs: the
    rows of bench.md's device checks table."""
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


def recorded_problems(variants: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What the rig recorded in each run, with where: every warm-up, then
    the timed runs round by round."""
    out = [f"({key}) warm-up: {p}" for key, entry in variants.items()
           for p in entry["warmup"]["problems"]]
    timed = sorted(((run["round"], key, run) for key, entry in variants.items()
                    for run in entry["runs"]), key=operator.itemgetter(0))
    return out + [f"({key}) round {r}: {p}" for r, key, run in timed for p in run["problems"]]


def output_checks(dev: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every check on the scenario's output (schema :data:`SCHEMA`), made
    once: (the checks' rows, every problem prefixed ``device:``).  The
    problems: a run's recorded ones, a variant not run, a deassign proof
    that does not hold, a failed check."""
    found: list[dict[str, Any]] = []
    problems = recorded_problems(dev["variants"])
    missing = [v.key for v in model.VARIANTS if v.key not in dev["variants"]]
    if missing:
        problems.append(f"variant(s) {', '.join(missing)} not run")
    for key, entry in dev["variants"].items():
        variant = model.get(key)
        found += variant_checks(variant, entry, dev["writes"])
        problems += [f"({key}) path: {p}" for p in path_problems(variant, entry["path"])]
    problems += [f"check failed: ({c['variant']}) {c['name']}: {c['value']}, expected "
                 f"{c['expected']}" for c in found if not c["ok"]]
    return found, [f"device: {p}" for p in problems]
