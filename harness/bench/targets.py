"""The project's performance targets, evaluated from a bench.json record.

They are fixed here and nowhere else.  A miss is reported (the ratio
measured, the limit, MISS), never absorbed by widening a limit: the point
of the table is to show what the series does, including where it falls
short.

Targets are performance ratios only.  Counts, exits, the guest's
iterations, buffer contents and path proofs are checks
(:func:`payload.vmexit.checks.verify`): a failed check fails the run before
any target is evaluated.

The scale rows each have a target against their 0-registration row
(:data:`SCALE_TARGETS`).  The doorbell-bank scenario's targets
(:data:`DEVICE_TARGETS`) pair its variants' runs, not modes.  Some ratios
are worth showing but have no limit
(:data:`REPORTED`: the hypercalls against the kernel-pio floor, whose
cost under TCG is the emulator's); they are evaluated the same way and
reported apart, never as targets.

Each target is decided on the median of its per-round paired ratios
(:mod:`payload.stats`, shared with the doorbell-bank scenario), computed
from the raw trial times; the ratio of the two medians is printed beside
it.  When the limit lies inside the paired median's confidence interval,
the verdict is ``straddle``: the run cannot tell, and says so rather than
calling a pass or a miss.

The limits are set for instructions per doorbell
(:mod:`harness.bench.icount`), on which ``make bench`` decides them under
TCG: a percent there is a percent of path length, repeatable to 0.1 %.
On an SSH host (wall-clock only) the same limits apply to time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payload import stats
from payload.vmexit import modes

RatioTarget = stats.Target
"""paired median of a / b ``op`` limit, a and b being modes."""


RATIO_TARGETS: tuple[RatioTarget, ...] = (
    RatioTarget("iofd-pio", "kernel-pio", "<=", 1.10,
                "an iofd doorbell costs about what the cheapest in-kernel exit costs"),
    RatioTarget("iofd-pio", "ioeventfd-pio", "<=", 1.01,
                "ranges cost nothing over upstream's exact match (PIO)"),
    RatioTarget("iofd-mmio", "ioeventfd-mmio", "<=", 1.01,
                "ranges cost nothing over upstream's exact match (MMIO)"),
    RatioTarget("iofd-mmio", "ioeventfd-mmio-len0", "<=", 1.05,
                "ranges cost nothing over upstream's fastest MMIO doorbell (len=0, virtio's)"),
    RatioTarget("iofd-buffer-pio", "iofd-pio", "<=", 1.02,
                "keeping the written value costs little over only signalling (PIO)"),
    RatioTarget("iofd-buffer-mmio", "iofd-mmio", "<=", 1.02,
                "keeping the written value costs little over only signalling (MMIO)"),
    RatioTarget("userspace-pio", "iofd-pio", ">=", 1.5,
                "skipping the userspace hop pays (PIO)"),
    RatioTarget("userspace-mmio", "iofd-mmio", ">=", 1.35,
                "skipping the userspace hop pays (MMIO)"),
)


SCALE_LIMIT = 1.01
SCALE_TARGETS: tuple[RatioTarget, ...] = tuple(
    RatioTarget(m.name, m.base, "<=", SCALE_LIMIT,
                f"{m.others} other registrations on the bus cost nothing ({m.base})")
    for m in modes.SCALE_MODES if m.base is not None)
"""Every scale row against its 0-registration row, paired per round."""

TARGETS: tuple[RatioTarget, ...] = RATIO_TARGETS + SCALE_TARGETS

DEVICE_TARGETS: tuple[RatioTarget, ...] = (
    RatioTarget("c", "b", "<=", 1.10,
                "one KVM_IOFD with a buffer costs about what 64 ioeventfds plus the guest's shadow "
                "store cost, without the guest's cooperation"),
    RatioTarget("a", "c", ">=", 1.5, "keeping the doorbell writes out of userspace pays"),
)
"""The doorbell-bank scenario's targets, on the per-round paired ns per run
of two variants (:mod:`payload.device.model`'s a, b and c)."""


@dataclass(frozen=True)
class Reported:
    """paired median of a / b, shown with no limit."""

    a: str
    b: str
    why: str

    @property
    def rule(self) -> str:
        return f"{self.a} / {self.b}"


REPORTED: tuple[Reported, ...] = (
    Reported("hc", "kernel-pio", "the seed's iofd-hc against the cheapest in-kernel exit"),
    Reported("hc-floor", "kernel-pio", "a hypercall KVM refuses in the kernel against a port write "
                                       "it emulates there: the two floors"),
    Reported("hc", "hc-floor", "what binding the hypercall to an eventfd costs over the bare hypercall"),
)


def _by_round(bench: Mapping[str, Any], name: str) -> dict[int, float] | None:
    """Round index -> raw ns of ``name``'s trial in it; None if not run."""
    per = bench.get("trials_ns", {})
    if name not in per:
        return None
    return dict(enumerate(per[name]))


def evaluate_one(bench: Mapping[str, Any], t: RatioTarget) -> dict[str, Any]:
    """One target's entry (:func:`payload.stats.evaluate`): rule, limit,
    the paired median, its confidence interval, its IQR and every round's ratio (raw floats), the
    ratio of medians, ``verdict`` and ``ok`` (True on pass, False on a miss,
    None on a straddle or when a mode was not run)."""
    return stats.evaluate(t, {t.a: _by_round(bench, t.a), t.b: _by_round(bench, t.b)})


def evaluate(bench: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every target, in :data:`TARGETS` order."""
    return [evaluate_one(bench, t) for t in TARGETS]


def evaluate_reported(bench: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every :data:`REPORTED` ratio whose modes ran: rule, why and the same
    paired statistics a target has, with no limit and no verdict."""
    out = []
    for r in REPORTED:
        paired = stats.paired(_by_round(bench, r.a), _by_round(bench, r.b))
        if paired is not None:
            out.append({"rule": r.rule, "a": r.a, "b": r.b, "why": r.why, **paired})
    return out


def misses(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets that were evaluated and not met."""
    return [r for r in results if r.get("verdict") == stats.MISS or r["ok"] is False]


def straddles(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets whose limit lies inside the paired median's confidence interval: undecided."""
    return [r for r in results if r.get("verdict") == stats.STRADDLE]


def evaluate_device(variants: Mapping[str, Mapping[str, Any]],
                    less_device: bool = False) -> list[dict[str, Any]]:
    """Every :data:`DEVICE_TARGETS` entry from the scenario's ``variants``
    (their timed runs, paired by round): on each run's ns, or with
    ``less_device`` on ns less the device thread's CPU time."""
    per_round = {key: {run["round"]: run["ns"] - (run["device_cpu_ns"] if less_device else 0)
                       for run in entry["runs"]}
                 for key, entry in variants.items()}
    return [stats.evaluate(t, per_round) for t in DEVICE_TARGETS]


def device_targets(bench: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The doorbell-bank scenario's targets (:data:`DEVICE_TARGETS`), as
    ``device`` in the record holds them; none when it did not run."""
    return list((bench.get("device") or {}).get("targets", []))


def every_target(bench: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The modes' targets, then the scenario's with ``device`` before their
    rule (its a, b, c are variants, not modes): what ``--strict`` judges."""
    return [*bench["targets"], *({**t, "rule": f"device {t['rule']}"} for t in device_targets(bench))]
