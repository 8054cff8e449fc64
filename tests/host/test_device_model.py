"""The doorbell-bank scenario's pure logic, no VM needed: the write pattern,
the guest programs (objdump and a toy run of their listing), the consumer's
bookkeeping, every check (payload.device.checks) fed both good and broken
observations, the paired-ratio targets (harness.bench.targets), and the
CLI's --help."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.bench import targets
from payload import stats
from payload.device import checks, model, runner
from payload.device.model import Consumer, DeviceRecord
from payload.guest import memmap, queues
from payload.guest.programs import Program
from tests.host import test_asm

REPO = Path(__file__).resolve().parents[2]
PATTERN = model.tail_pattern(500, seed=7)


def consumed_cleanly(pattern: Sequence[tuple[int, int]], every: int = 10) -> DeviceRecord:
    """What a correct device sees: a wakeup every ``every`` writes loading
    the tails so far, then the drain."""
    record = DeviceRecord()
    tails = [0] * queues.QUEUES
    for i, (q, t) in enumerate(pattern, 1):
        tails[q] = t
        if i % every == 0 or i == len(pattern):
            record.wakeups += 1
            record.signals += every if i % every == 0 else i % every
            record.consumer.observe(list(tails))
            record.snapshots.append((record.signals, list(tails)))
    record.consumed_by_signals = list(record.consumer.consumed)
    record.final = list(tails)
    record.consumer.observe(record.final)
    return record


# --- the pattern ---------------------------------------------------------------------
def test_pattern_is_fixed_by_its_seed() -> None:
    assert model.tail_pattern(300, seed=7) == model.tail_pattern(300, seed=7)
    assert model.tail_pattern(300, seed=7) != model.tail_pattern(300, seed=8)
    # xorshift32 from 1: 270369, then 67634689 (Marsaglia's sequence); 270369 % 64 = 33,
    # 67634689 % 3 = 1, so the first write moves queue 33's tail to 2.
    assert model.tail_pattern(1, seed=1) == [(33, 2)]


def test_default_pattern_tails_increase_by_small_steps_on_every_queue() -> None:
    pattern = model.tail_pattern(model.DEFAULT_WRITES)
    for tails in model.written_tails(pattern):
        assert tails, "every queue is written"
        steps = [b - a for a, b in zip([0, *tails], tails, strict=False)]
        assert set(steps) <= set(range(1, model.MAX_STEP + 1))
        assert len(set(steps)) > 1, "tails skip values, so a made-up load can be seen"
    assert max(model.last_tails(pattern)) <= queues.MAX_TAIL


def test_pattern_refuses_tails_past_16_bits() -> None:
    with pytest.raises(ValueError, match="passed 65535"):
        model.tail_pattern(70_000, queues=1, max_step=1)


# --- the guest programs ---------------------------------------------------------------
def queue_programs() -> list[Program]:
    few = model.tail_pattern(6, seed=3)
    return [queues.doorbell_program(few, shadow_first=False),
            queues.doorbell_program(few, shadow_first=True)]


@pytest.mark.skipif(test_asm.OBJDUMP is None, reason="objdump (binutils) not installed")
@pytest.mark.parametrize("prog", queue_programs(), ids=lambda p: p.name)
def test_objdump_agrees_with_listing(prog: Program, tmp_path: Path) -> None:
    test_asm.test_objdump_agrees_with_listing(prog, tmp_path)


def stores_of(prog: Program) -> tuple[list[tuple[int, int]], int]:
    """Run a queue program's listing on a toy CPU: ([(address, eax)] per
    store before DONE, EAX at DONE).  Knows exactly the instructions the
    program may use, so anything else fails the test."""
    eax = 0
    stores = []
    for _, _, text in prog.listing:
        op, _, rest = text.partition(" ")
        dst, _, src = (x.strip() for x in rest.partition(","))
        if text == "out dx, eax":
            return stores, eax
        if op == "mov" and dst == "eax":
            eax = int(src, 0)
        elif op == "mov" and dst == "ax":
            eax = (eax & 0xFFFF0000) | int(src, 0)
        elif op == "mov" and dst.startswith("[") and src == "eax":
            stores.append((int(dst.strip("[]"), 0), eax))
        elif not (op == "mov" and dst == "dx"):
            raise AssertionError(f"the toy cannot run {text!r}")
    raise AssertionError("no DONE")


@pytest.mark.parametrize("shadow_first", [False, True])
def test_program_writes_the_pattern_in_order(shadow_first: bool) -> None:
    prog = queues.doorbell_program(PATTERN, shadow_first)
    stores, done = stores_of(prog)
    assert done == len(PATTERN) == prog.count
    assert stores[-1] == (memmap.RESULT_ADDR, len(PATTERN))
    expected = []
    for q, t in PATTERN:
        if shadow_first:  # the shadow before the doorbell, as the protocol needs
            expected.append((queues.SHADOW_BASE + 4 * q, t))
        expected.append((queues.DOORBELL_BASE + 4 * q, t))
    assert stores[:-1] == expected


def test_programs_fit_and_the_default_fits_both() -> None:
    for shadow_first in (False, True):
        most = queues.max_writes(shadow_first)
        prog = queues.doorbell_program(model.tail_pattern(most), shadow_first)
        assert prog.origin + len(prog.code) <= queues.QUEUE_RAM_SIZE
        with pytest.raises(ValueError, match="do not fit"):
            queues.doorbell_program(model.tail_pattern(most + 1), shadow_first)
    assert queues.max_writes(True) >= model.DEFAULT_WRITES


def test_layout() -> None:
    assert queues.DOORBELL_BASE == queues.QUEUE_RAM_SIZE, "the doorbells are the first MMIO bytes"
    assert queues.SHADOW_BASE + queues.BANK_LEN <= memmap.LOAD_ADDR
    names = {name for name, _ in queues.scratch_areas()}
    assert {"RESULT_ADDR", "IDT_DESC_ADDR", "XMM_DATA_ADDR"} <= names
    for _, addr in queues.scratch_areas():
        assert not addr <= queues.SHADOW_BASE < addr + queues.SCRATCH_SPAN
        assert not queues.SHADOW_BASE <= addr < queues.SHADOW_BASE + queues.BANK_LEN
    assert queues.doorbell(63) == queues.DOORBELL_BASE + 252
    for bad in (-1, 64):
        with pytest.raises(ValueError):
            queues.doorbell(bad)
    with pytest.raises(ValueError, match="16 bits"):
        queues.doorbell_program([(0, 0x10000)], shadow_first=False)


# --- the consumer ----------------------------------------------------------------------
def test_consumer_consumes_only_what_moved_and_once() -> None:
    c = Consumer(queues=4)
    assert c.observe([0, 0, 0, 0]) == 0
    assert c.observe([3, 0, 2, 0]) == 2
    assert c.observe([3, 0, 5, 0]) == 1  # queue 2 moved from 2 to 5: 3 entries
    assert c.consumed == [3, 0, 5, 0]
    assert c.entries == 3 + 2 + 3
    assert c.history == [[3], [], [2, 5], []]
    assert (c.moves, c.scans, c.regressions) == (3, 3, [])


def test_consumer_refuses_a_tail_going_backwards() -> None:
    c = Consumer(queues=2)
    c.observe([5, 1])
    c.observe([4, 2])  # queue 0 back to 4: consuming would repeat entry 5
    assert c.consumed == [5, 2]
    assert c.regressions == [(0, 5, 4)]
    assert c.entries == 5 + 2


def test_consumer_wants_every_queue() -> None:
    with pytest.raises(ValueError, match="3 tails for 4 queues"):
        Consumer(queues=4).observe([0, 0, 0])


# --- the checks, good and broken ----------------------------------------------------------
def test_a_clean_device_passes_every_check() -> None:
    record = consumed_cleanly(PATTERN)
    assert checks.device_problems(record, PATTERN) == []
    assert record.consumer.consumed == model.last_tails(PATTERN)


def test_a_lost_last_write_is_caught() -> None:
    record = consumed_cleanly(PATTERN[:-1])  # the device never saw the last write
    record.signals += 1  # even if the eventfd had counted it
    problems = checks.device_problems(record, PATTERN)
    q, t = PATTERN[-1]
    assert any(f"queue {q}: consumed up to" in p and f"last write was {t}" in p for p in problems)
    assert any("the drain loaded tails other than" in p for p in problems)
    assert any("entries" in p for p in problems)


def test_a_tail_only_the_drain_found_is_caught() -> None:
    """The last write's signal is lost, but the drain after the run loads
    every tail: the consumer ends exact, the drain matches, and only the
    check made before the drain sees that a signal never came."""
    record = DeviceRecord()
    tails = [0] * queues.QUEUES
    for i, (q, t) in enumerate(PATTERN, 1):
        tails[q] = t
        if i < len(PATTERN):  # no wakeup for the last write
            record.wakeups += 1
            record.signals += 1
            record.consumer.observe(list(tails))
            record.snapshots.append((record.signals, list(tails)))
    record.signals += 1  # even if the eventfd had counted it
    record.consumed_by_signals = list(record.consumer.consumed)
    record.final = list(tails)
    record.consumer.observe(record.final)
    assert record.consumer.consumed == model.last_tails(PATTERN)  # the drain hid it
    q, t = PATTERN[-1]
    assert checks.device_problems(record, PATTERN) == [
        f"queue {q}: the signalled wakeups consumed up to {record.consumed_by_signals[q]}, "
        f"the guest's last write was {t}"]


def test_a_regression_is_caught() -> None:
    record = consumed_cleanly(PATTERN)
    q = PATTERN[0][0]
    stale = list(record.final)
    stale[q] = 1
    record.consumer.observe(stale)
    assert any("below the consumed" in p for p in checks.consumer_problems(record.consumer, PATTERN))


def test_a_made_up_tail_is_caught() -> None:
    c = Consumer()
    last = model.last_tails(PATTERN)
    torn = list(last)
    q = next(q for q, tails in enumerate(model.written_tails(PATTERN)) if tails[-1] - 1 not in tails)
    torn[q] = last[q] - 1  # a value between two writes, as a torn load could give
    c.observe(torn)
    c.observe(last)
    problems = checks.consumer_problems(c, PATTERN)
    assert problems == [f"queue {q}: consumed up to {last[q] - 1}, which the guest never wrote to it"]


def test_ordering_rule() -> None:
    pattern = [(0, 1), (1, 1), (0, 2)]
    assert checks.ordering_problems([(2, [1, 1]), (3, [2, 1])], pattern, queues=2) == []
    assert checks.ordering_problems([(1, [2, 1])], pattern, queues=2) == []  # later is fine
    late = checks.ordering_problems([(3, [1, 1])], pattern, queues=2)
    assert late == ["after 3 signals queue 0 loaded 1, but an earlier write had stored 2"]


def test_signal_and_wakeup_counts_are_checked() -> None:
    record = consumed_cleanly(PATTERN)
    record.signals -= 1
    assert any("signals for 500" in p for p in checks.device_problems(record, PATTERN))
    record = consumed_cleanly(PATTERN)
    record.wakeups = record.signals + 1
    assert any("device wakeups" in p for p in checks.device_problems(record, PATTERN))


@pytest.mark.parametrize("variant", model.VARIANTS, ids=lambda v: v.name)
def test_vmm_checks(variant: model.Variant) -> None:
    n = 100
    exits = variant.expected_exits(n)
    db = n if variant.exits_per_write else 0
    good = dict(end="done", done_value=n, exits=exits, doorbell_exits=db, stray_exits=0, kicks=db)
    assert checks.vmm_problems(variant, n, **good) == []
    assert checks.vmm_problems(variant, n, **{**good, "exits": exits + 1})
    assert checks.vmm_problems(variant, n, **{**good, "end": "hlt"})
    assert checks.vmm_problems(variant, n, **{**good, "done_value": n - 1})
    assert checks.vmm_problems(variant, n, **{**good, "stray_exits": 1})
    assert checks.vmm_problems(variant, n, **{**good, "kicks": db + 1})


def test_exit_expectations() -> None:
    a, b, c = (model.get(k) for k in "abc")
    assert (a.expected_exits(10), b.expected_exits(10), c.expected_exits(10)) == (11, 1, 1)
    assert (a.registrations, b.registrations, c.registrations) == (0, 64, 1)
    assert model.get("iofd-buffer") is c
    with pytest.raises(ValueError, match="unknown variant"):
        model.get("d")


def test_path_proof_verdicts() -> None:
    b, c = model.get("b"), model.get("c")
    good_b = {"ioctl": "KVM_IOEVENTFD", "removed": {"KVM_IOFD": 0, "KVM_IOEVENTFD": 64},
              "errors": {"KVM_IOFD": ["ENOENT"], "KVM_IOEVENTFD": []}, "registrations": 64}
    assert checks.path_problems(b, good_b) == []
    swapped = {"ioctl": "KVM_IOFD", "removed": {"KVM_IOEVENTFD": 0, "KVM_IOFD": 1},
               "errors": {"KVM_IOEVENTFD": ["ENOENT"], "KVM_IOFD": ["ENOENT"]}, "registrations": 1}
    assert checks.path_problems(c, swapped) == []
    assert checks.path_problems(b, swapped)  # (b) registered the iofd way: caught
    assert checks.path_problems(b, {**good_b, "errors": {"KVM_IOFD": ["ENOTTY"]}})


# --- statistics and targets ------------------------------------------------------------
def test_spread_and_verdicts() -> None:
    """The summary's spreads carry the extremes; the verdicts are the
    benchmark's (both are :mod:`payload.stats`)."""
    s = stats.spread_dict([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"]) == (3.0, 2.0, 4.0, 1.0, 5.0)
    assert stats.spread_dict([7])["median"] == 7
    assert stats.verdict(1.0, stats.MedianCi(0.9, 1.05, 0.95), "<=", 1.10) == stats.PASS
    assert stats.verdict(1.2, stats.MedianCi(1.15, 1.3, 0.95), "<=", 1.10) == stats.MISS
    assert stats.verdict(1.0, stats.MedianCi(0.9, 1.2, 0.95), "<=", 1.10) == stats.STRADDLE
    assert stats.verdict(1.6, stats.MedianCi(1.55, 1.7, 0.95), ">=", 1.5) == stats.PASS


def test_targets_use_paired_ratios_not_medians() -> None:
    # b drifts up over the run, c tracks it at 0.9x: the pairs say 0.9 every round.
    b = {0: 100.0, 1: 200.0, 2: 300.0, 3: 400.0}
    c = {r: 0.9 * v for r, v in b.items()}
    entry = stats.evaluate(targets.DEVICE_TARGETS[0], {"b": b, "c": c})
    assert entry["rule"] == "c / b <= 1.1"
    assert entry["measured"] == pytest.approx(0.9)
    assert entry["iqr"] == [pytest.approx(0.9), pytest.approx(0.9)]
    assert (entry["pairs"], entry["verdict"], entry["ok"]) == (4, stats.PASS, True)
    missing = stats.evaluate(targets.DEVICE_TARGETS[1], {"b": b, "c": c})  # (a) not run
    assert (missing["verdict"], missing["ok"], missing["measured"]) == (stats.NOT_RUN, None, None)


def test_rounds_follow_the_williams_design() -> None:
    """Three variants: the base row a b c shifted, then the same reversed
    (odd n): all six orders, then the cycle again."""
    assert ["".join(stats.run_order("abc", r)) for r in range(7)] == [
        "abc", "bca", "cab", "cba", "acb", "bac", "abc"]


# --- the CLI ----------------------------------------------------------------------------
def test_help_runs_without_kvm() -> None:
    out = subprocess.run([sys.executable, "-m", "payload.device", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "--writes" in out and "--rounds" in out and "JSON" in out


def test_bad_arguments_exit_2() -> None:
    assert runner.main(["--writes", "0"]) == 2
    assert runner.main(["--writes", str(queues.max_writes(True) + 1)]) == 2


def documented_top_level_keys() -> list[str]:
    """The keys the runner's docstring lists for the top-level object."""
    doc = runner.__doc__ or ""
    block = doc[doc.index("The top-level object::"):doc.index("\nwhere::")]
    return re.findall(r"^  (\w+) ", block, re.M)


def test_schema_doc_lists_the_keys_measure_builds() -> None:
    """The keys of the dict literal measure() starts its output from are
    exactly the documented ones (the in-VM test checks a real run's output
    against the same list)."""
    tree = ast.parse(Path(runner.__file__).read_text())
    measure = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "measure")
    literal = next(n.value for n in ast.walk(measure) if isinstance(n, ast.AnnAssign)
                   and isinstance(n.target, ast.Name) and n.target.id == "out")
    assert isinstance(literal, ast.Dict)
    built = [k.value for k in literal.keys if isinstance(k, ast.Constant)]
    assert built == documented_top_level_keys()
