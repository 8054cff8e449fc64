"""The project's performance targets, evaluated from a bench.json record.

They are fixed here and nowhere else.  A miss is reported (the ratio
measured, the limit, MISS), never absorbed by widening a limit: the point
of the table is to show what the series does, including where it falls
short.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.bench.summary import ratio
from payload.bench import modes

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq,
}


@dataclass(frozen=True)
class RatioTarget:
    """median(a) / median(b) ``op`` limit."""

    a: str
    b: str
    op: str
    limit: float
    why: str

    @property
    def rule(self) -> str:
        return f"{self.a} / {self.b} {self.op} {self.limit:g}"


RATIO_TARGETS: tuple[RatioTarget, ...] = (
    RatioTarget("iofd-pio", "kernel-pio", "<=", 1.10,
                "an iofd doorbell costs about what the cheapest in-kernel exit costs"),
    RatioTarget("iofd-pio", "ioeventfd-pio", "<=", 1.05,
                "ranges cost nothing over upstream's exact match (PIO)"),
    RatioTarget("iofd-mmio", "ioeventfd-mmio", "<=", 1.05,
                "ranges cost nothing over upstream's exact match (MMIO)"),
    RatioTarget("userspace-pio", "iofd-pio", ">=", 1.5,
                "skipping the userspace hop pays (PIO)"),
    RatioTarget("userspace-mmio", "iofd-mmio", ">=", 1.35,
                "skipping the userspace hop pays (MMIO)"),
)

EXIT_MODES = ("iofd-pio", "iofd-mmio", "ioeventfd-pio", "ioeventfd-mmio",
              "userspace-pio", "userspace-mmio")
"""Modes whose userspace exits per trial are a target (1, or N + 1)."""


def paired_ratio(bench: Mapping[str, Any], a: str, b: str) -> float | None:
    """Median over trials of a_t / b_t, the two taken in the same round.

    Shown beside the verdict as a noise gauge only: rounds are seconds
    apart, so a load burst on the host moves both halves of a pair, and a
    paired ratio far from the ratio of medians says the run was noisy.
    """
    per = bench.get("trials_us", {})
    if a not in per or b not in per or len(per[a]) != len(per[b]):
        return None
    return statistics.median(x / y for x, y in zip(per[a], per[b], strict=True))


def evaluate(bench: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per target: rule, measured, limit, ok (None when a mode is absent).

    ``measured`` is the ratio of medians and alone decides ``ok``;
    ``paired`` is :func:`paired_ratio`, for judging noise.
    """
    out: list[dict[str, Any]] = []
    for t in RATIO_TARGETS:
        measured = ratio(bench, t.a, t.b)
        paired = paired_ratio(bench, t.a, t.b)
        out.append({
            "rule": t.rule, "op": t.op, "limit": t.limit, "why": t.why,
            "measured": None if measured is None else round(measured, 3),
            "paired": None if paired is None else round(paired, 3),
            "ok": None if measured is None else OPS[t.op](measured, t.limit),
        })
    n = bench["iterations"]
    for name in EXIT_MODES:
        want = modes.get(name).expected_kvm_runs(n)
        got = bench["modes"].get(name, {}).get("userspace_exits_per_trial")
        out.append({
            "rule": f"{name} userspace exits/trial == {want}", "op": "==", "limit": want,
            "why": "the write stays in the kernel" if want == 1 else "every write exits",
            "measured": got, "paired": None, "ok": None if got is None else got == want,
        })
    return out


def misses(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets that were evaluated and not met."""
    return [r for r in results if r["ok"] is False]

