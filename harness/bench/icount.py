"""The benchmark's deterministic figure: guest instructions per doorbell, under QEMU's icount.

Why: under plain TCG a mode's rounds scatter by 14-26 % (IQR/median), so
limits of a few percent cannot be decided however many rounds run.  With
``-icount shift=0,sleep=off`` (:data:`harness.vm.boot.ICOUNT`) every guest
clock advances one nanosecond per instruction the emulated CPU retires, so
the native loop's trial time *is* the number of instructions the L1 kernel,
the VMM and the L2 guest executed for it; two runs agree to four digits.

What the count leaves out: it is a path-length measure, like cachegrind's
Ir.  The emulated world switch (VMRUN, #VMEXIT) is one instruction however
much state it moves, and caches, TLBs, branch prediction and memory
latency cost nothing.  So a path that is short but cache-hostile looks
cheap here; the wall-clock figure (printed beside every instruction
figure) and a remote host's run (real hardware, wall-clock only) are where
such costs show.

The icount run is the same runner (:mod:`payload.vmexit.runner`) and
doorbell-bank scenario (:mod:`payload.device.runner`) in a second boot of
the same VM; its raw output is judged by the same checks as the wall-clock
run's, and its targets are the ones :mod:`harness.bench.targets` fixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.bench import summary, targets
from payload import stats

TRIALS = 6
"""Rounds of the icount run: the figures repeat to 0.1 %, and with 6
rounds the median's interval (the whole range) covers 97 %."""

BASIS_INSTRUCTIONS, BASIS_WALL = "instructions", "wall-clock"

NOTE = (
    "Instructions: the run under QEMU's icount (`-icount shift=0,sleep=off`), where guest "
    "time counts instructions, so a trial's time is the instructions the L1 kernel, the VMM's "
    "KVM_RUN loop and the L2 guest executed; per doorbell = per trial / N.  A path-length "
    "measure, like cachegrind's Ir: the emulated world switch counts as one instruction, and "
    "caches, TLBs and memory latency not at all.  Targets are decided on it; the wall-clock "
    "figure is printed beside it.")


def _per(values: list[float], n: int) -> dict[str, float]:
    """Median, min and max of ``values`` / ``n``."""
    per = [v / n for v in values]
    return {"median": stats.spread(per).median, "min": min(per), "max": max(per)}


def _array(arr: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The 1024-doorbell array in instructions: what registering it costs
    each way, median over the repeats (None when not measured)."""
    if arr is None:
        return None
    out: dict[str, Any] = {"register_ratio": arr["register_ratio"]}
    for side in ("ioeventfd", "iofd"):
        s = arr[side]
        out[side] = {"registrations": s["registrations"],
                     "register_instructions": s["register_us"]["median"] * 1000,
                     "per_registration": s["register_us_per_registration"] * 1000}
    return out


def _device(dev: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The doorbell-bank scenario in instructions per doorbell write."""
    if dev is None:
        return None
    return {"variants": {key: {"name": v["name"], "per_write": _per(v["ns_per_write"], 1)}
                         for key, v in dev["variants"].items()},
            "targets": dev["targets"]}


def summarize(raw: Mapping[str, Any], env: Mapping[str, Any]) -> dict[str, Any]:
    """The icount run's record: ``iterations``, ``trials``, ``modes``
    (per mode ``per_doorbell``: instructions per doorbell, median/min/max),
    ``trials_ns`` (each trial's instructions, what the targets pair),
    ``targets``, ``reported``, ``doorbell_array`` and ``device``.

    The run's checks are the wall-clock run's (:func:`summary.summarize`
    applies them, and a failed one raises): a mode that counts wrong under
    icount is no more trusted than one that does without it.
    """
    full = summary.summarize(raw, env)
    n = full["iterations"]
    return {
        "iterations": n,
        "trials": full["trials"],
        "modes": {name: {"per_doorbell": _per(full["trials_ns"][name], n)}
                  for name in full["modes"]},
        "trials_ns": full["trials_ns"],
        "rounds": full["rounds"],
        "checks": len(full["checks"]),
        "targets": targets.evaluate(full),
        "reported": targets.evaluate_reported(full),
        "doorbell_array": _array(full["doorbell_array"]),
        "device": _device(full["device"]),
    }


def _beside(decided: list[dict[str, Any]], wall: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each decided target with the wall-clock entry of the same rule under
    ``wall`` (its paired median, interval and verdict: shown, not deciding)."""
    by_rule = {w["rule"]: w for w in wall}
    out = []
    for r in decided:
        w = by_rule.get(r["rule"])
        out.append({**r, "basis": BASIS_INSTRUCTIONS,
                    "wall": None if w is None else {k: w[k] for k in (
                        "measured", "ci", "ci_coverage", "ratio_of_medians", "verdict")}})
    return out


def decide(bench: dict[str, Any], counted: Mapping[str, Any] | None) -> None:
    """Make ``bench["targets"]`` (and the device's, and the reported
    ratios) the deciding ones: the instruction figures' when the icount run
    happened, with the wall-clock entries beside them (``targets_wall``,
    ``reported_wall``); else the wall-clock ones, marked so."""
    if counted is None:
        bench["targets"] = [{**r, "basis": BASIS_WALL} for r in bench["targets"]]
        return
    bench["icount"] = counted
    bench["targets_wall"] = bench["targets"]
    bench["targets"] = _beside(counted["targets"], bench["targets_wall"])
    bench["reported_wall"] = bench.get("reported", [])
    bench["reported"] = counted["reported"]
    dev, dev_counted = bench.get("device"), counted.get("device")
    if dev is not None and dev_counted is not None:
        dev["targets_wall"] = dev["targets"]
        dev["targets"] = _beside(dev_counted["targets"], dev["targets_wall"])
