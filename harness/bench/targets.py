"""The project's performance targets, evaluated from a bench.json record.

They are fixed here and nowhere else.  A miss is reported (the ratio
measured, the limit, MISS), never absorbed by widening a limit: the point
of the table is to show what the series does, including where it falls
short.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.bench import modes
from harness.bench.summary import ratio

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


def evaluate(bench: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per target: rule, measured, limit, ok (None when a mode is absent)."""
    out: list[dict[str, Any]] = []
    for t in RATIO_TARGETS:
        measured = ratio(bench, t.a, t.b)
        out.append({
            "rule": t.rule, "op": t.op, "limit": t.limit, "why": t.why,
            "measured": None if measured is None else round(measured, 3),
            "ok": None if measured is None else OPS[t.op](measured, t.limit),
        })
    n = bench["iterations"]
    for name in EXIT_MODES:
        want = modes.get(name).expected_kvm_runs(n)
        got = bench["modes"].get(name, {}).get("userspace_exits_per_trial")
        out.append({
            "rule": f"{name} userspace exits/trial == {want}", "op": "==", "limit": want,
            "why": "the write stays in the kernel" if want == 1 else "every write exits",
            "measured": got, "ok": None if got is None else got == want,
        })
    return out


def misses(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets that were evaluated and not met."""
    return [r for r in results if r["ok"] is False]

