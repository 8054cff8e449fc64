"""The statistics the benchmark's targets are decided on, and the rotation
of the mode order that makes pairing fair.  No VM needed."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter

import pytest

from harness.bench import targets
from payload import stats
from payload.vmexit import modes


# --- paired ratios -------------------------------------------------------------------
def test_paired_ratios_pair_by_round_in_round_order() -> None:
    a = {2: 30.0, 0: 10.0, 1: 22.0}
    b = {0: 5.0, 1: 11.0, 2: 10.0}
    assert stats.paired_ratios(a, b) == [2.0, 2.0, 3.0]


def test_a_round_missing_on_either_side_gives_no_pair() -> None:
    assert stats.paired_ratios({0: 4.0, 1: 6.0, 3: 9.0}, {0: 2.0, 1: 3.0, 2: 1.0}) == [2.0, 2.0]
    assert stats.paired_ratios({}, {0: 1.0}) == []


def test_paired_ratios_of_integers_are_exact_floats() -> None:
    """Raw nanoseconds go in unrounded: 5000 writes at 30.0004 µs against
    30.0 µs differ in the fifth digit, which rounding to 1 ns per write keeps
    but rounding to 0.01 µs (the printed rtt) would lose."""
    (r,) = stats.paired_ratios({0: 150_002_000}, {0: 150_000_000})
    assert r == 150_002_000 / 150_000_000 != 1.0


def test_pairing_cancels_drift_that_the_ratio_of_medians_keeps() -> None:
    """The machine slows down over the run; a is 3 % above b in every round,
    but b's median comes from a faster round than a's."""
    b = [10.0, 10.0, 14.0, 18.0, 19.0]
    a = [x * 1.03 for x in (10.0, 14.0, 18.0, 19.0, 20.0)]
    a[1] = b[1] * 1.03  # round 1: a and b both fast
    a[2], a[3], a[4] = b[2] * 1.03, b[3] * 1.03, b[4] * 1.03
    a[0] = 20.0 * 1.03  # round 0: a hit by a burst, b not
    pairs = stats.paired_ratios(dict(enumerate(a)), dict(enumerate(b)))
    assert stats.spread(pairs).median == pytest.approx(1.03)
    assert stats.ratio_of_medians(a, b) == pytest.approx(18.0 * 1.03 / 14.0)


# --- quartiles -----------------------------------------------------------------------
def test_spread_is_median_and_inclusive_quartiles() -> None:
    s = stats.spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.q1, s.median, s.q3) == (2.0, 3.0, 4.0)
    s = stats.spread([4.0, 1.0, 3.0, 2.0])  # order does not matter; interpolated
    assert (s.q1, s.median, s.q3) == (1.75, 2.5, 3.25)


def test_quartiles_stay_inside_the_sample() -> None:
    s = stats.spread([1.0, 9.0])
    assert 1.0 <= s.q1 <= s.median <= s.q3 <= 9.0


def test_spread_of_one_value_and_of_none() -> None:
    assert stats.spread([1.2]) == stats.Spread(1.2, 1.2, 1.2)
    with pytest.raises(ValueError):
        stats.spread([])


def test_fifteen_rounds_median_is_the_eighth() -> None:
    values = [float(i) for i in range(15, 0, -1)]
    s = stats.spread(values)
    assert s.median == statistics.median(values) == 8.0
    assert (s.q1, s.q3) == (4.5, 11.5)


# --- the median's confidence interval ----------------------------------------------
@pytest.mark.parametrize(("n", "lo", "hi", "coverage"), [
    (5, 1, 5, 0.9375),        # too few rounds for 95 %: the whole range, and its real coverage
    (6, 1, 6, 0.96875),
    (9, 2, 8, 0.9609375),
    (15, 4, 12, 0.96484375),  # the textbook [x(4), x(12)]
    (30, 10, 21, 0.9572260547429323),
])
def test_median_ci_is_the_order_statistics_interval(n: int, lo: int, hi: int,
                                                    coverage: float) -> None:
    ci = stats.median_ci([float(i) for i in range(n, 0, -1)])
    assert (ci.lo, ci.hi) == (lo, hi) and ci.coverage == pytest.approx(coverage)


def test_median_ci_narrows_as_rounds_grow_where_the_iqr_does_not() -> None:
    """The same spread of values, sampled 15 and 135 times: the IQR stays
    put, the interval for the median shrinks towards it."""
    def sample(n: int) -> list[float]:
        return [1.0 + 0.1 * statistics.NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]
    few, many = sample(15), sample(135)
    iqr = [stats.spread(v).q3 - stats.spread(v).q1 for v in (few, many)]
    width = [stats.median_ci(v).hi - stats.median_ci(v).lo for v in (few, many)]
    assert iqr[1] == pytest.approx(iqr[0], rel=0.1)
    assert width[1] < width[0] / 2


def test_median_ci_of_one_value_and_of_none() -> None:
    assert stats.median_ci([2.0]) == stats.MedianCi(2.0, 2.0, 0.0)
    with pytest.raises(ValueError):
        stats.median_ci([])


# --- verdicts ------------------------------------------------------------------------
@pytest.mark.parametrize(("q1", "median", "q3", "op", "limit", "want"), [
    (1.00, 1.02, 1.04, "<=", 1.05, "pass"),
    (1.06, 1.08, 1.10, "<=", 1.05, "miss"),
    (1.03, 1.04, 1.07, "<=", 1.05, "straddle"),  # median passes, the interval does not agree
    (1.03, 1.06, 1.07, "<=", 1.05, "straddle"),  # median misses, the interval does not agree
    (1.00, 1.05, 1.05, "<=", 1.05, "pass"),      # limits are inclusive; touching is not straddling
    (1.05, 1.05, 1.10, "<=", 1.05, "pass"),      # q1 on the limit: the median decides
    (1.05, 1.06, 1.10, "<=", 1.05, "miss"),
    (1.55, 1.60, 1.70, ">=", 1.5, "pass"),
    (1.40, 1.45, 1.48, ">=", 1.5, "miss"),
    (1.45, 1.52, 1.56, ">=", 1.5, "straddle"),
])
def test_verdict(q1: float, median: float, q3: float, op: str, limit: float, want: str) -> None:
    assert stats.verdict(median, stats.MedianCi(q1, q3, 0.95), op, limit) == want


def test_a_target_on_straddling_rounds_is_neither_met_nor_missed() -> None:
    ns_a = [103, 100, 108, 105, 110]
    bench = {"trials_ns": {"iofd-mmio": [r * 1000 for r in ns_a],
                           "ioeventfd-mmio-len0": [100_000] * 5}}
    rule = next(t for t in targets.RATIO_TARGETS
                if t.rule == "iofd-mmio / ioeventfd-mmio-len0 <= 1.05")
    r = targets.evaluate_one(bench, rule)
    assert r["verdict"] == "straddle" and r["ok"] is None
    assert r["measured"] == 1.05 and r["iqr"] == [1.03, 1.08]
    assert r["ci"] == [1.0, 1.1] and r["ci_coverage"] == 0.9375
    assert targets.misses([r]) == [] and targets.straddles([r]) == [r]


def test_more_rounds_decide_what_the_iqr_rule_never_could() -> None:
    """Rounds spread 1.03 to 1.07 around a 1.045 median: the IQR straddles
    1.05 however many rounds run; with 99 rounds the median's interval
    lies below it and the target passes."""
    pattern = [1.03, 1.04, 1.045, 1.05, 1.07]
    ratios = [x for x in pattern for _ in range(1)] * 1
    many = sorted(pattern * 20)[:99]
    for values, want in ((ratios, "straddle"), (many, "pass")):
        s = stats.spread(values)
        assert s.q1 < 1.05 <= s.q3
        ci = stats.median_ci(values)
        assert stats.verdict(s.median, ci, "<=", 1.05) == want


def test_every_target_compares_modes_that_exist() -> None:
    for t in targets.TARGETS:
        modes.get(t.a), modes.get(t.b)
        assert t.op in stats.OPS


# --- rotation ------------------------------------------------------------------------
def test_run_order_is_a_williams_square() -> None:
    names = ["a", "b", "c", "d"]
    assert [modes.run_order(names, t) for t in range(5)] == [
        ["a", "b", "d", "c"], ["b", "c", "a", "d"], ["c", "d", "b", "a"],
        ["d", "a", "c", "b"], ["a", "b", "d", "c"]]
    assert modes.run_order([], 3) == []


def _neighbours(orders: list[list[str]]) -> Counter[tuple[str, str]]:
    return Counter(pair for order in orders for pair in itertools.pairwise(order))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9, len(modes.NAMES), len(modes.ALL_NAMES)])
def test_over_a_cycle_each_row_runs_once_in_every_place_and_after_every_other(n: int) -> None:
    """A cycle is n rounds (2n for odd n): every row in every place
    equally often, and every ordered pair of neighbours equally often."""
    names = [f"m{i}" for i in range(n)]
    cycle = n if n % 2 == 0 else 2 * n
    orders = [modes.run_order(names, t) for t in range(cycle)]
    for order in orders:
        assert sorted(order) == sorted(names)
    for name in names:
        places = Counter(order.index(name) for order in orders)
        assert set(places) == set(range(n)) and len(set(places.values())) == 1, name
    pairs = _neighbours(orders)
    assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1


def test_a_cyclic_rotation_would_fail_the_neighbour_check() -> None:
    """The check above can fail: the old rotation keeps each row's
    follower in every round."""
    names = [f"m{i}" for i in range(6)]
    orders = [[*names[t:], *names[:t]] for t in range(6)]
    assert len(_neighbours(orders)) == 6 < 6 * 5


def test_default_rounds_move_every_row_through_as_many_places_as_rounds() -> None:
    """``make bench`` rotates all 22 rows (modes and scale rows) over 15
    rounds: no row can run first in every one, but each runs in 15
    different places, never twice in the same one."""
    names = list(modes.ALL_NAMES)
    orders = [modes.run_order(names, t) for t in range(modes.DEFAULT_TRIALS)]
    for name in names:
        places = [order.index(name) for order in orders]
        assert len(set(places)) == modes.DEFAULT_TRIALS, name


def test_every_scale_target_compares_a_scale_row_with_its_zero_row() -> None:
    assert [(t.a, t.b, t.op, t.limit) for t in targets.SCALE_TARGETS] == [
        (f"{base}+{k}", base, "<=", 1.01)
        for base in ("iofd-pio", "iofd-mmio", "ioeventfd-pio") for k in (10, 100, 990)]
