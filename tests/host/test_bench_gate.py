"""The instruction-count gate's rules (:mod:`harness.bench.gate`), on records by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench import gate

PROC_VERSION = ("Linux version 7.3.4-iofd-abc123 (root@build) (gcc (Debian 12.2.0-14+deb12u1) "
                "12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC")
ENV = gate.environment("7.3.4-iofd-abc123", PROC_VERSION, "QEMU emulator version 7.2.22",
                       "AMD EPYC", "abc123", "default")
FIGURES = {"iofd-pio": 1605.0, "ioeventfd-pio": 1595.0, "kernel-pio": 1492.0}


def record(tmp_path: Path, figures: dict[str, float] = FIGURES) -> dict:
    path = tmp_path / "record.json"
    gate.write(ENV, figures, "first record", gate.ITERATIONS, gate.TRIALS, path)
    loaded = gate.load(path)
    assert loaded is not None
    return loaded


def test_environment_names_what_a_count_depends_on() -> None:
    assert ENV["base"] == "7.3.4" and ENV["series"] == "abc123"
    assert ENV["compiler"] == "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
    assert gate.environment("6.1", "garbage", "q", "c", "s", "debug")["compiler"] == "unknown"


def test_the_same_figures_pass(tmp_path: Path) -> None:
    v = gate.compare(record(tmp_path), ENV, dict(FIGURES))
    assert (v.incomparable, v.worse, v.better, v.compared) == ([], [], [], 3)


@pytest.mark.parametrize(("factor", "worse", "better"), [
    (1.004, 0, 0),   # inside the tolerance
    (1.006, 1, 0),   # half a percent and a bit: a regression
    (0.99, 0, 1),    # cheaper: reported, not failed
])
def test_one_mode_over_the_tolerance_fails(tmp_path: Path, factor: float, worse: int,
                                           better: int) -> None:
    measured = {**FIGURES, "iofd-pio": FIGURES["iofd-pio"] * factor}
    v = gate.compare(record(tmp_path), ENV, measured)
    assert (len(v.worse), len(v.better)) == (worse, better)
    assert v.largest == pytest.approx(abs(factor - 1), rel=1e-3)
    if worse:
        assert v.worse[0].startswith("iofd-pio: 1605.0 -> 1614.6") and "+0.60%" in v.worse[0]


def test_a_mode_that_disappeared_fails(tmp_path: Path) -> None:
    v = gate.compare(record(tmp_path), ENV, {"iofd-pio": 1605.0, "kernel-pio": 1492.0})
    assert v.worse == ["ioeventfd-pio: recorded at 1595.0, not measured in this run"]


@pytest.mark.parametrize("key", gate.COMPARED_ENV)
def test_a_different_toolchain_or_emulator_is_not_compared(tmp_path: Path, key: str) -> None:
    v = gate.compare(record(tmp_path), {**ENV, key: "something else"},
                     {k: x * 2 for k, x in FIGURES.items()})
    assert v.incomparable and key in v.incomparable[0] and not v.worse


def test_a_different_series_is_compared(tmp_path: Path) -> None:
    """The series is what the gate is for: a new id is compared as usual."""
    v = gate.compare(record(tmp_path), {**ENV, "series": "fff000", "kernel": "7.3.4-iofd-fff000"},
                     {**FIGURES, "kernel-pio": 1600.0})
    assert not v.incomparable and len(v.worse) == 1


def test_a_new_record_says_what_changed(tmp_path: Path) -> None:
    old = record(tmp_path)
    lines = gate.changes(old, {**ENV, "series": "fff000"}, {**FIGURES, "iofd-pio": 1610.0,
                                                            "hc": 2000.0})
    assert "series: 'abc123' -> 'fff000'" in lines
    assert "iofd-pio: 1605.0 -> 1610.0 (+0.31%)" in lines
    assert "hc: added" in lines
    assert gate.changes(old, ENV, dict(FIGURES)) == ["nothing changed"]
    assert gate.changes(None, ENV, FIGURES) == ["no record before: every figure is new"]
