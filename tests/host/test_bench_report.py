"""The benchmark's host side on synthetic raw data: schema, ratios, targets,
exactness checks and the output files.  No VM needed."""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from harness.bench import report, summary, targets
from payload.bench import checks, modes
from payload.cpu import cpu_model

N = 1000
T = 5
ENV = {"series": "deadbeef", "accel": "tcg", "host_cpu": "Test CPU @ 1 GHz"}

# Median rtt per mode (µs) that meets every target.
GOOD = {
    "userspace-mmio": 56.0, "userspace-pio": 46.0, "iofd-mmio": 38.0, "iofd-pio": 30.0,
    "ioeventfd-mmio": 37.5, "ioeventfd-pio": 29.8, "kernel-pio": 29.5, "cpuid": 33.0,
}
SPREAD = (-0.4, -0.1, 0.0, 0.2, 0.5)  # per-trial offsets around the median, µs


def trial(name: str, t: int, rtt_us: float, n: int = N) -> dict[str, Any]:
    """A trial record exactly as the runner writes one (rig.Trial as a dict)."""
    mode = modes.get(name)
    rings = mode.expected_rings(n)
    return {
        "mode": name, "trial": t, "ns": round(rtt_us * 1000 * n),
        "kvm_runs": mode.expected_kvm_runs(n), "exits": mode.expected_kvm_runs(n),
        "interrupted": 0,
        "io_exits": rings if mode.bus == "pio" else 0,
        "mmio_exits": rings if mode.bus == "mmio" else 0,
        "rings": rings, "doorbell": mode.expected_doorbell(n), "eventfd_left": 0, "end": "done",
    }


def make_raw(medians: dict[str, float] = GOOD, n: int = N, trials: int = T) -> dict[str, Any]:
    runs = [trial(name, t, med + SPREAD[t % len(SPREAD)], n)
            for t in range(trials) for name, med in medians.items()]
    return {"raw_schema": 1, "kernel": "6.12.117-iofd-deadbeef", "guest_cpu": "QEMU TCG",
            "vcpus": 1, "iterations": n, "trials": trials, "access_size": 1,
            "modes": list(medians), "runs": runs, "problems": []}


def by_rule(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["rule"]: r for r in results}


# --- the schema ----------------------------------------------------------------------
def test_bench_json_has_exactly_the_schema_1_keys() -> None:
    bench = report.build(make_raw(), ENV)
    required = {"schema", "kernel", "series", "accel", "host_cpu", "vcpus", "iterations", "trials", "modes"}
    assert required <= bench.keys()
    assert (bench["schema"], bench["kernel"], bench["series"], bench["accel"]) == (
        1, "6.12.117-iofd-deadbeef", "deadbeef", "tcg")
    assert (bench["host_cpu"], bench["vcpus"], bench["iterations"], bench["trials"]) == (
        "Test CPU @ 1 GHz", 1, N, T)
    assert list(bench["modes"]) == list(modes.NAMES)
    for rec in bench["modes"].values():
        assert set(rec) == {"rtt_us", "iops", "doorbell_exact", "userspace_exits_per_trial"}
        assert set(rec["rtt_us"]) == {"median", "min", "max"}
        assert rec["doorbell_exact"] is True
    json.loads(json.dumps(bench))  # serialisable as is


def test_summarize_refuses_without_host_facts() -> None:
    with pytest.raises(ValueError, match="host_cpu"):
        summary.summarize(make_raw(), {"series": "x", "accel": "tcg"})


def test_exits_per_trial_are_n_plus_1_only_for_userspace() -> None:
    bench = report.build(make_raw(), ENV)
    for name, rec in bench["modes"].items():
        want = N + 1 if name.startswith("userspace-") else 1
        assert rec["userspace_exits_per_trial"] == want, name


# --- the arithmetic ------------------------------------------------------------------
def test_rtt_is_trial_time_over_n_and_iops_its_reciprocal() -> None:
    raw = make_raw({"iofd-pio": 0.0})
    for t, us in zip(range(T), (10.0, 12.5, 11.0, 40.0, 9.0), strict=True):
        raw["runs"][t]["ns"] = round(us * 1000 * N)
    rec = report.build(raw, ENV)["modes"]["iofd-pio"]
    assert rec["rtt_us"] == {"median": 11.0, "min": 9.0, "max": 40.0}
    assert rec["iops"] == round(1e6 / 11.0)


def test_median_of_an_even_number_of_trials() -> None:
    raw = make_raw({"cpuid": 0.0}, trials=4)
    for t, us in enumerate((10.0, 20.0, 30.0, 100.0)):
        raw["runs"][t]["ns"] = round(us * 1000 * N)
    assert report.build(raw, ENV)["modes"]["cpuid"]["rtt_us"]["median"] == 25.0


def test_ratios_are_of_medians() -> None:
    bench = report.build(make_raw(), ENV)
    assert summary.ratio(bench, "userspace-pio", "iofd-pio") == pytest.approx(46.0 / 30.0)
    assert summary.ratio(bench, "iofd-pio", "kernel-pio") == pytest.approx(30.0 / 29.5)
    assert summary.ratio(bench, "iofd-pio", "no-such-mode") is None
    assert bench["trials_us"]["iofd-pio"] == [30.0 + s for s in SPREAD]
    assert statistics.median(bench["trials_us"]["cpuid"]) == 33.0


# --- the targets ---------------------------------------------------------------------
def test_every_target_met() -> None:
    results = report.build(make_raw(), ENV)["targets"]
    assert len(results) == len(targets.RATIO_TARGETS) + len(targets.EXIT_MODES)
    assert all(r["ok"] is True for r in results), [r for r in results if not r["ok"]]
    rules = by_rule(results)
    assert rules["userspace-pio / iofd-pio >= 1.5"]["measured"] == round(46.0 / 30.0, 3)
    assert rules["iofd-pio userspace exits/trial == 1"]["measured"] == 1
    assert rules["userspace-mmio userspace exits/trial == 1001"]["measured"] == N + 1


@pytest.mark.parametrize(("mode", "median", "rule"), [
    ("iofd-pio", 33.0, "iofd-pio / kernel-pio <= 1.1"),          # 33 / 29.5 = 1.119
    ("iofd-pio", 31.5, "iofd-pio / ioeventfd-pio <= 1.05"),      # 31.5 / 29.8 = 1.057
    ("iofd-mmio", 39.5, "iofd-mmio / ioeventfd-mmio <= 1.05"),   # 39.5 / 37.5 = 1.053
    ("userspace-pio", 44.0, "userspace-pio / iofd-pio >= 1.5"),  # 44 / 30 = 1.467
    ("userspace-mmio", 51.0, "userspace-mmio / iofd-mmio >= 1.35"),  # 51 / 38 = 1.342
])
def test_a_missed_target_is_shown_not_loosened(tmp_path: Path, mode: str, median: float, rule: str) -> None:
    bench = report.build(make_raw({**GOOD, mode: median}), ENV)
    missed = targets.misses(bench["targets"])
    assert rule in [m["rule"] for m in missed]
    report.write(bench, tmp_path)
    md = (tmp_path / "bench.md").read_text()
    row = next(line for line in md.splitlines() if f"`{rule}`" in line)
    assert "**MISS**" in row
    assert f"{by_rule(bench['targets'])[rule]['measured']:.3f}" in row
    assert "targets met; missed: " in md
    assert json.loads((tmp_path / "bench.json").read_text())["targets"] == bench["targets"]


def test_paired_ratio_is_shown_but_does_not_decide() -> None:
    raw = make_raw({**GOOD, "iofd-pio": 30.0, "kernel-pio": 29.5})
    # one round where a load burst hit iofd-pio only: the paired median ignores it
    burst = next(t for t in raw["runs"] if t["mode"] == "iofd-pio" and t["trial"] == 2)
    burst["ns"] = round(60.0 * 1000 * N)
    bench = report.build(raw, ENV)
    r = by_rule(bench["targets"])["iofd-pio / kernel-pio <= 1.1"]
    pairs = [*((30.0 + s) / (29.5 + s) for s in SPREAD if s != 0.0), 60.0 / 29.5]
    assert r["paired"] == pytest.approx(statistics.median(pairs), abs=1e-3)
    assert r["measured"] == round(bench["modes"]["iofd-pio"]["rtt_us"]["median"] / 29.5, 3)
    assert targets.paired_ratio(bench, "iofd-pio", "nope") is None
    assert f"| {r['paired']:.3f} |" in report.markdown(bench)


def test_limits_are_inclusive() -> None:
    # iofd-pio exactly 1.10 x kernel-pio meets "<= 1.10"
    bench = report.build(make_raw({**GOOD, "kernel-pio": 27.5, "iofd-pio": 30.25,
                                   "ioeventfd-pio": 30.0, "userspace-pio": 46.0}), ENV)
    assert by_rule(bench["targets"])["iofd-pio / kernel-pio <= 1.1"]["ok"] is True


def test_targets_for_absent_modes_are_not_applicable() -> None:
    bench = report.build(make_raw({"iofd-pio": 30.0, "cpuid": 33.0}), ENV)
    rules = by_rule(bench["targets"])
    assert rules["iofd-pio / kernel-pio <= 1.1"]["ok"] is None
    assert rules["iofd-pio userspace exits/trial == 1"]["ok"] is True
    assert targets.misses(bench["targets"]) == []


# --- exactness -----------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "message"), [
    ("doorbell", N - 1, "doorbell = 999, must be 1000"),
    ("doorbell", N + 1, "doorbell = 1001, must be 1000"),
    ("kvm_runs", 2, "kvm_runs = 2, must be 1"),
    ("interrupted", 1, "interrupted = 1, must be 0"),
    ("eventfd_left", 3, "eventfd_left = 3, must be 0"),
    ("end", "hlt", "end = 'hlt', must be 'done'"),
])
def test_a_count_mismatch_raises(field: str, value: object, message: str) -> None:
    raw = make_raw()
    bad = next(t for t in raw["runs"] if t["mode"] == "iofd-pio" and t["trial"] == 3)
    bad[field] = value
    with pytest.raises(checks.CountMismatch) as exc:
        report.build(raw, ENV)
    assert exc.value.problems == [f"iofd-pio trial 3: {message}"]
    assert message in str(exc.value)


def test_userspace_mode_must_exit_every_write() -> None:
    raw = make_raw()
    bad = next(t for t in raw["runs"] if t["mode"] == "userspace-mmio")
    bad.update(kvm_runs=N, exits=N, mmio_exits=N - 1, rings=N - 1, doorbell=N - 1)
    with pytest.raises(checks.CountMismatch) as exc:
        report.build(raw, ENV)
    text = "\n".join(exc.value.problems)
    for what in ("kvm_runs = 1000, must be 1001", "rings = 999, must be 1000",
                 "doorbell = 999, must be 1000", "999 device exits reached userspace"):
        assert what in text


def test_nothing_may_ring_the_floor_modes() -> None:
    raw = make_raw()
    next(t for t in raw["runs"] if t["mode"] == "kernel-pio")["doorbell"] = 1
    with pytest.raises(checks.CountMismatch, match="kernel-pio trial 0: doorbell = 1, must be 0"):
        report.build(raw, ENV)


def test_a_missing_trial_raises() -> None:
    raw = make_raw()
    raw["runs"] = [t for t in raw["runs"] if not (t["mode"] == "cpuid" and t["trial"] == 0)]
    with pytest.raises(checks.CountMismatch, match="cpuid: 4 trials recorded, must be 5"):
        report.build(raw, ENV)


def test_check_raw_is_quiet_on_exact_data() -> None:
    raw = make_raw()
    checks.check_raw(copy.deepcopy(raw))
    assert checks.raw_problems(raw) == []


# --- the outputs ---------------------------------------------------------------------
def test_render_writes_json_markdown_and_png(tmp_path: Path) -> None:
    bench = report.render(make_raw(), ENV, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(report.OUTPUTS)
    png = (tmp_path / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["modes"] == bench["modes"]
    md = (tmp_path / "bench.md").read_text()
    for name in modes.NAMES:
        assert f"| {name} |" in md
    assert ("| iofd-pio | iofd-pio | 33333 | 30.00 | 29.60-30.50 | 0.54 | 1.02 | 1 "
            "| exact (1000/trial) |") in md
    assert "| userspace-mmio | qemu-mmio | 17857 | 56.00 |" in md
    assert "| kernel-pio | - |" in md and "exact (0/trial)" in md
    assert "Test CPU @ 1 GHz" in md and "deadbeef" in md
    assert f"{len(bench['targets'])} of {len(bench['targets'])} targets met." in md
    assert "| iofd-hc (extrapolated) | 2.37 | 0.87 | not measured" in md


def test_host_load_is_recorded_and_flagged() -> None:
    quiet = report.markdown(report.build(make_raw(), {**ENV, "host_load": {
        "before": 0.2, "after": 1.1, "cpus": 2}}))
    assert "1-min load average 0.2 before, 1.1 after, on 2 CPUs\n" in quiet
    busy = report.markdown(report.build(make_raw(), {**ENV, "host_load": {
        "before": 5.9, "after": 6.2, "cpus": 2}}))
    assert "on 2 CPUs (loaded: other work shared the CPUs" in busy
    assert "host load: not recorded" in report.markdown(report.build(make_raw(), ENV))


def test_terminal_summary_is_in_the_seed_style() -> None:
    text = report.terminal(report.build(make_raw(), ENV))
    assert "iofd-pio:   33333 iops,   30.00us rtt (29.60-30.50), 1 exits/trial" in text
    assert "pass  iofd-pio / kernel-pio <= 1.1" in text


def test_cpu_model_reads_the_first_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nprocessor\t: 1\nmodel name\t: Other\n")
    assert cpu_model(info) == "Some CPU"
    assert cpu_model(tmp_path / "missing") == "unknown"


def test_mode_expectations() -> None:
    assert [m.name for m in modes.MODES if m.uses_doorbell] == [
        "userspace-mmio", "userspace-pio", "iofd-mmio", "iofd-pio", "ioeventfd-mmio", "ioeventfd-pio"]
    assert modes.get("userspace-pio").expected_kvm_runs(7) == 8
    assert modes.get("cpuid").expected_doorbell(7) == 0
    with pytest.raises(ValueError, match="unknown mode 'nope'"):
        modes.get("nope")
