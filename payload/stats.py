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

Why a confidence interval for the median, not the interquartile range: a
target is decided when the limit lies outside the distribution-free 95 %
confidence interval of the paired median (order statistics of a
Binomial(n, 1/2) count, as in any nonparametric statistics text).  That
interval narrows as rounds are added, roughly as 1/sqrt(n); the IQR does
not, so with the IQR rule more rounds could never decide a target that sat
inside the rounds' own spread.

Everything here works on raw values (integer nanoseconds per trial, or
guest instructions under QEMU's icount); rounding is the printer's
business.
"""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}

PASS, MISS, STRADDLE, NOT_RUN = "pass", "miss", "straddle", "n/a"
CONFIDENCE = 0.95
"""What the median's confidence interval must cover, where the rounds allow."""


@dataclass(frozen=True)
class Spread:
    """Median and interquartile range of a sample."""

    median: float
    q1: float
    q3: float


@dataclass(frozen=True)
class MedianCi:
    """A distribution-free confidence interval for a sample's median:
    ``[lo, hi]`` are order statistics, and ``coverage`` is the exact
    probability that such an interval holds the true median."""

    lo: float
    hi: float
    coverage: float

    def straddles(self, limit: float) -> bool:
        """The limit lies strictly inside the interval: the rounds cannot
        tell which side of it the median is on."""
        return self.lo < limit < self.hi


def _binomial_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def median_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> MedianCi:
    """The narrowest order-statistic interval ``[x(k), x(n+1-k)]`` (sorted,
    1-based) whose coverage ``1 - 2 P(X <= k-1)`` reaches ``confidence``.

    With too few values for that (5 or fewer at 95 %) the whole range is
    returned with the lower coverage it has, which the report prints: the
    interval never claims more than the rounds give.
    """
    if not values:
        raise ValueError("the confidence interval of no values")
    x = sorted(values)
    n = len(x)
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _binomial_cdf_half(k, n) >= confidence:
        k += 1
    return MedianCi(x[k - 1], x[n - k], 1 - 2 * _binomial_cdf_half(k - 1, n) if n > 1 else 0.0)


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


def verdict(median: float, ci: MedianCi, op: str, limit: float) -> str:
    """``straddle`` when the median's confidence interval straddles the
    limit, else ``pass`` or ``miss`` as the median meets ``op limit``
    (inclusive) or not."""
    if ci.straddles(limit):
        return STRADDLE
    return PASS if OPS[op](median, limit) else MISS


def ratio_of_medians(a: Sequence[float], b: Sequence[float]) -> float:
    """median(a) / median(b): printed beside the paired median, never deciding."""
    return statistics.median(a) / statistics.median(b)


def paired(a: Mapping[int, float] | None, b: Mapping[int, float] | None) -> dict[str, Any] | None:
    """What a target (or a ratio shown without one) reports on a / b:
    ``measured`` (the paired median), ``ci`` ([lo, hi], the median's
    confidence interval) and ``ci_coverage``, ``iqr`` ([q1, q3], shown, not
    deciding), ``ratios`` (every round's pair), ``pairs`` and
    ``ratio_of_medians``, all raw floats; None when either side was not
    measured or no round has both."""
    if not a or not b:
        return None
    ratios = paired_ratios(a, b)
    if not ratios:
        return None
    s = spread(ratios)
    ci = median_ci(ratios)
    return {"measured": s.median, "ci": [ci.lo, ci.hi], "ci_coverage": ci.coverage,
            "iqr": [s.q1, s.q3], "ratios": ratios, "pairs": len(ratios),
            "ratio_of_medians": ratio_of_medians(list(a.values()), list(b.values()))}


def evaluate(target: Target, per_round: Mapping[str, Mapping[int, float] | None]) -> dict[str, Any]:
    """One target's entry from each measured row's round -> raw value.

    Keys: rule, a, b, op, limit, why, measured, ci, ci_coverage, iqr, ratios, pairs,
    ratio_of_medians (see :func:`paired`; None, [] or 0 when not run),
    verdict (pass, miss, straddle, or n/a when not run) and ok (True on a
    pass, False on a miss, None when undecided or not run)."""
    entry: dict[str, Any] = {
        "rule": target.rule, "a": target.a, "b": target.b, "op": target.op,
        "limit": target.limit, "why": target.why, "measured": None, "ci": None,
        "ci_coverage": None, "iqr": None,
        "ratios": [], "ratio_of_medians": None, "pairs": 0, "verdict": NOT_RUN, "ok": None,
    }
    found = paired(per_round.get(target.a), per_round.get(target.b))
    if found is None:
        return entry
    v = verdict(found["measured"], MedianCi(*found["ci"], found["ci_coverage"]), target.op,
                target.limit)
    entry.update(found, verdict=v, ok={PASS: True, MISS: False}.get(v))
    return entry


def williams_base(n: int) -> list[int]:
    """0, 1, n-1, 2, n-2, ...: the first row of a Williams square of side n."""
    out, lo, hi = [0], 1, n - 1
    while len(out) < n:
        out.append(lo)
        lo += 1
        if len(out) < n:
            out.append(hi)
            hi -= 1
    return out


def run_order(names: Sequence[str], round_index: int) -> list[str]:
    """Round ``round_index``'s run order, from a Williams design: round t
    runs ``names[(b_j + t) mod n]`` for the base row b of
    :func:`williams_base` (reversed in every second block of n rounds when
    n is odd).

    Over n rounds (2n when n is odd) each row runs once in every place, and
    each row runs right after every other row equally often, so no row
    always follows the same neighbour into a warm or cold emulator.  (A
    plain cyclic rotation, which this replaced, keeps every row's
    neighbours in every round.)"""
    n = len(names)
    if not n:
        return []
    t = round_index % (2 * n if n % 2 else n)
    order = [names[(b + t) % n] for b in williams_base(n)]
    return order[::-1] if t >= n else order
