"""The statistics every target is decided on: paired ratios, quartiles, verdicts.

One implementation for the benchmark's modes (judged on the host by
``harness.bench.targets``) and the doorbell-bank scenario (judged in the
guest by ``payload.device.runner``): it lives in the payload because the
payload cannot import the harness, while the harness may import the payload.
Standard library only, as everything under ``payload/``.

Why paired: the rows of one round run seconds apart, so a drift of the
machine over the minutes of a run (a noisy neighbour, thermal state, the
emulator's caches) moves both halves of a pair alike and cancels in their
ratio, where a ratio of two medians taken over the whole run keeps it.  On
one machine, three fresh runs flipped two targets on the ratio of medians
while the paired ratios stayed inside their limits.

Everything here works on raw values (integer nanoseconds per trial);
rounding is the printer's business.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}

PASS, MISS, STRADDLE, NOT_RUN = "pass", "miss", "straddle", "n/a"


@dataclass(frozen=True)
class Spread:
    """Median and interquartile range of a sample."""

    median: float
    q1: float
    q3: float

    def straddles(self, limit: float) -> bool:
        """The limit lies strictly inside the interquartile range: the
        middle half of the rounds fell on both sides of it."""
        return self.q1 < limit < self.q3


@dataclass(frozen=True)
class Target:
    """paired median of a / b ``op`` limit (a and b name what was measured:
    a benchmark mode, a device variant)."""

    a: str
    b: str
    op: str
    limit: float
    why: str

    @property
    def rule(self) -> str:
        return f"{self.a} / {self.b} {self.op} {self.limit:g}"


def paired_ratios(a: Mapping[int, float], b: Mapping[int, float]) -> list[float]:
    """a_r / b_r for every round r in which both were measured, in round order.

    ``a`` and ``b`` map a round's index to that round's raw value; a round
    missing from either side (a mode not run) gives no pair.
    """
    return [a[r] / b[r] for r in sorted(a.keys() & b.keys())]


def spread(values: Sequence[float]) -> Spread:
    """Median and quartiles (the inclusive method: the quartiles are
    interpolated between the sample's own values, never beyond them)."""
    if not values:
        raise ValueError("the spread of no values")
    if len(values) == 1:
        return Spread(values[0], values[0], values[0])
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(median, q1, q3)


def spread_dict(values: Sequence[float]) -> dict[str, float]:
    """:func:`spread` as JSON wants it, with the extremes:
    ``median``, ``q1``, ``q3``, ``min`` and ``max``."""
    s = spread(values)
    return {"median": s.median, "q1": s.q1, "q3": s.q3, "min": min(values), "max": max(values)}


def verdict(s: Spread, op: str, limit: float) -> str:
    """``straddle`` when the IQR straddles the limit, else ``pass`` or
    ``miss`` as the median meets ``op limit`` (inclusive) or not."""
    if s.straddles(limit):
        return STRADDLE
    return PASS if OPS[op](s.median, limit) else MISS


def ratio_of_medians(a: Sequence[float], b: Sequence[float]) -> float:
    """median(a) / median(b): printed beside the paired median, never deciding."""
    return statistics.median(a) / statistics.median(b)


def paired(a: Mapping[int, float] | None, b: Mapping[int, float] | None) -> dict[str, Any] | None:
    """What a target (or a ratio shown without one) reports on a / b:
    ``measured`` (the paired median), ``iqr`` ([q1, q3]), ``ratios`` (every
    round's pair), ``pairs`` and ``ratio_of_medians``, all raw floats; None
    when either side was not measured or no round has both."""
    if not a or not b:
        return None
    ratios = paired_ratios(a, b)
    if not ratios:
        return None
    s = spread(ratios)
    return {"measured": s.median, "iqr": [s.q1, s.q3], "ratios": ratios, "pairs": len(ratios),
            "ratio_of_medians": ratio_of_medians(list(a.values()), list(b.values()))}


def evaluate(target: Target, per_round: Mapping[str, Mapping[int, float] | None]) -> dict[str, Any]:
    """One target's entry from each measured row's round -> raw value.

    Keys: rule, a, b, op, limit, why, measured, iqr, ratios, pairs,
    ratio_of_medians (see :func:`paired`; None, [] or 0 when not run),
    verdict (pass, miss, straddle, or n/a when not run) and ok (True on a
    pass, False on a miss, None when undecided or not run)."""
    entry: dict[str, Any] = {
        "rule": target.rule, "a": target.a, "b": target.b, "op": target.op,
        "limit": target.limit, "why": target.why, "measured": None, "iqr": None,
        "ratios": [], "ratio_of_medians": None, "pairs": 0, "verdict": NOT_RUN, "ok": None,
    }
    found = paired(per_round.get(target.a), per_round.get(target.b))
    if found is None:
        return entry
    v = verdict(Spread(found["measured"], *found["iqr"]), target.op, target.limit)
    entry.update(found, verdict=v, ok={PASS: True, MISS: False}.get(v))
    return entry


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """Round ``round_index``'s run order: ``names`` rotated left by the
    round number, so each row runs first, second, ... in turn and no row
    always follows the same neighbour into a warm or cold emulator."""
    if not names:
        return []
    k = round_index % len(names)
    return [*names[k:], *names[:k]]
