"""make nvme's table and targets, from raw runner output made by hand (no VM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.nvme import report

IOS = 1000
# Per I/O: (userspace exits, all exits, MMIO exits, instructions) at QD 1, 4, 16,
# shaped like the measurements: P0 exits twice per I/O, P1 not at all.
SHAPE = {
    "S0": (2.0, 13.4, 2.0, 200_000), "S1": (0.0, 8.6, 0.0, 150_000),
    "P0": (2.0, 13.4, 2.0, 210_000), "P1": (0.0, 9.0, 0.0, 160_000),
    "P2": (0.0, 8.6, 0.0, 150_500),
}


def job(config: str, qd: int, counted: bool, shape: dict[str, tuple[float, ...]] = SHAPE,
        rc: int = 0, errors: int = 0) -> dict[str, Any]:
    us, ex, mm, ins = shape[config]
    counts: dict[str, Any] = {"stats": {"exits": int(ex * IOS), "mmio_exits": int(mm * IOS)}}
    if not counted:
        counts["userspace_exits"] = int(us * IOS)
    return {"config": config, "round": 0, "qd": qd, "rc": rc,
            "ns": int(ins * IOS) if counted else int(ins * IOS * 3), "counts": counts,
            "fio": {"ios": IOS, "iops": 1e9 / (ins * 3), "clat_ns": {"p50": 1e5, "p99": 2e5},
                    "errors": errors}}


def raw(counted: bool, shape: dict[str, tuple[float, ...]] = SHAPE,
        configs: tuple[str, ...] = tuple(SHAPE)) -> dict[str, Any]:
    return {"schema": 1, "kernel": "7.3.4", "counted": counted, "ios": IOS,
            "jobs": [job(c, qd, counted, shape) for c in configs for qd in (1, 4, 16)]}


VERIFY = {"jobs": [job("P1", 16, False)]}


def rules(ts: list[dict[str, Any]]) -> dict[str, bool | None]:
    return {t["rule"]: t["met"] for t in ts}


def test_the_expected_shape_meets_every_target() -> None:
    ts = report.targets(report.entries(raw(False), raw(True), VERIFY))
    assert len(ts) == 9
    assert all(t["met"] is True for t in ts), [t for t in ts if not t["met"]]


def test_instructions_come_from_the_counted_run_and_exits_from_the_traced_one() -> None:
    es = report.entries(raw(False), raw(True), VERIFY)
    p1 = next(e for e in es if e["config"] == "P1" and e["qd"] == 1)
    assert p1["instructions_per_io"] == 160_000
    assert p1["ns_per_io"] == 480_000
    assert p1["userspace_exits_per_io"] == 0.0 and p1["exits_per_io"] == 9.0
    assert next(e for e in es if e["config"] == "P1" and e["qd"] == 16)["verify_errors"] == 0
    assert "verify_errors" not in next(e for e in es if e["config"] == "P0")


@pytest.mark.parametrize("change, rule", [
    ({"P1": (1.0, 9.0, 1.0, 160_000)}, "P1's userspace exits per I/O at least 1.8 below P0's at QD1"),
    ({"P1": (0.0, 9.0, 0.0, 215_000)}, "P1 costs less per I/O than P0 at QD4"),
    ({"P1": (0.0, 9.0, 0.0, 166_000)}, "P1 within 10% of S1 per I/O at QD1"),
    ({"P2": (0.0, 8.6, 0.0, 152_000)}, "P2 within 1% of S1 per I/O at QD16"),
])
def test_each_target_misses_when_its_claim_is_false(change: dict[str, tuple[float, ...]],
                                                   rule: str) -> None:
    shape = {**SHAPE, **change}
    got = rules(report.targets(report.entries(raw(False, shape), raw(True, shape), VERIFY)))
    assert got[rule] is False
    assert sum(v is False for v in got.values()) >= 1


def test_a_verify_error_or_failed_fio_misses_integrity() -> None:
    bad = {"jobs": [job("P1", 16, False, errors=1)]}
    assert rules(report.targets(report.entries(raw(False), raw(True), bad)))["0 verify errors"] \
        is False
    failed = {"jobs": [job("P1", 16, False, rc=1)]}
    assert rules(report.targets(report.entries(raw(False), raw(True), failed)))[
        "0 verify errors"] is False


def test_missing_rows_are_not_measured_rather_than_met() -> None:
    only = ("P0", "P1")
    got = rules(report.targets(report.entries(raw(False, configs=only), raw(True, configs=only),
                                              None)))
    assert got["P1 within 10% of S1 per I/O at QD1"] is None
    assert got["0 verify errors"] is None
    assert got["P1 costs less per I/O than P0 at QD1"] is True


def test_without_icount_the_wall_clock_decides_and_says_so() -> None:
    ts = report.targets(report.entries(raw(False), None, VERIFY))
    p1p0 = next(t for t in ts if t["rule"] == "P1 costs less per I/O than P0 at QD1")
    assert "wall ns" in p1p0["figures"]


def test_under_tcg_without_icount_the_cost_targets_are_not_measured() -> None:
    ts = report.targets(report.entries(raw(False), None, VERIFY), wall_decides=False)
    got = {t["rule"]: t["met"] for t in ts}
    cost = [r for r in got if "costs less" in r or "within" in r]
    assert len(cost) == 7 and all(got[r] is None for r in cost)
    assert got["P1's userspace exits per I/O at least 1.8 below P0's at QD1"] is True


def test_render_writes_the_three_files(tmp_path: Path) -> None:
    doc = report.render(raw(False), raw(True), VERIFY, {"ios": IOS, "kernel": "7.3.4"}, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == set(report.OUTPUTS)
    md = (tmp_path / "nvme.md").read_text()
    assert "| P1 | 1 |" in md and "met: P1 within 10% of S1" in md
    saved = json.loads((tmp_path / "nvme.json").read_text())
    assert saved["entries"] == doc["entries"]
    for key in ("iops", "exits_per_io", "userspace_exits_per_io", "mmio_exits_per_io",
                "instructions_per_io"):
        assert key in saved["entries"][0]


def test_the_kernel_cover_letter_takes_the_table_from_the_last_run(tmp_path: Path) -> None:
    from harness.kernel import export

    body = (f"Intro\n\n{export.NVME_SECTION}\n{'-' * len(export.NVME_SECTION)}\nold text\n\n"
            "Benchmark\n---------\nbench\n")
    assert export.with_nvme(body, tmp_path / "nvme.md") == body
    report.render(raw(False), raw(True), VERIFY, {"ios": IOS, "kernel": "7.3.4"}, tmp_path)
    got = export.with_nvme(body, tmp_path / "nvme.md")
    assert "old text" not in got and "| P1 | 1 |" in got and "qemu-patch/" in got
    assert got.endswith("Benchmark\n---------\nbench\n")
    assert "# QEMU NVMe" not in got and "Targets:" in got
