"""``make bench``'s doorbell-bank section on synthetic scenario output: the
record, the re-made checks, the targets, bench.md, the console and the
chart.  No VM needed.  (The scenario's own rules: test_device_model.py.)"""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from harness.bench import chart, report, summary, targets
from payload import stats
from payload.vmexit import checks
from tests.host.test_bench_report import ENV, make_raw

WRITES = 400
ROUNDS = 5
DRIFT = (1.00, 1.30, 0.95, 1.60, 1.10)
"""The machine's speed per round: pairing must cancel it."""
BASE_NS = 20_000  # (b) per write in a round of speed 1

# What each variant must show, written out by hand: (a) exits on every write
# and has no registrations, (b) has 64 ioeventfds, (c) one KVM_IOFD.
BY_HAND = {
    "a": {"name": "userspace", "ioctl": None, "registrations": 0, "exits": WRITES + 1,
          "shadow": False, "removed": {"KVM_IOFD": 0, "KVM_IOEVENTFD": 0}},
    "b": {"name": "shadow-ioeventfd", "ioctl": "KVM_IOEVENTFD", "registrations": 64, "exits": 1,
          "shadow": True, "removed": {"KVM_IOFD": 0, "KVM_IOEVENTFD": 64}},
    "c": {"name": "iofd-buffer", "ioctl": "KVM_IOFD", "registrations": 1, "exits": 1,
          "shadow": False, "removed": {"KVM_IOEVENTFD": 0, "KVM_IOFD": 1}},
}


def run(key: str, r: int, ns: int, wakeups: int) -> dict[str, Any]:
    """One run record as the scenario writes it (payload.device.runner's RUN)."""
    device_cpu = ns // 4
    return {"round": r, "ns": ns, "ns_per_write": ns / WRITES,
            "userspace_exits": BY_HAND[key]["exits"], "doorbell_exits": WRITES if key == "a" else 0,
            "stray_exits": 0, "kicks": WRITES if key == "a" else 0, "kvm_runs": BY_HAND[key]["exits"],
            "interrupted": 0, "end": "done", "done_value": WRITES, "wakeups": wakeups,
            "signals": WRITES, "device_cpu_ns": device_cpu,
            "ns_per_write_less_device": (ns - device_cpu) / WRITES, "queue_moves": WRITES,
            "entries_consumed": 812, "tails_ok": True, "problems": []}


def summary_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("ns_per_write", "ns_per_write_less_device", "wakeups", "userspace_exits", "signals")
    out = {k: stats.spread_dict([r[k] for r in runs]) for k in keys}
    out["device_cpu_share"] = stats.spread_dict([r["device_cpu_ns"] / r["ns"] for r in runs])
    return out


def make_device(factors: dict[str, float] | None = None) -> dict[str, Any]:
    """The scenario's output: per round, (b) at BASE_NS x drift per write,
    (c) and (a) at ``factors`` times (b) in every round (c: 1.05, a: 2.4)."""
    factors = factors or {"a": 2.4, "b": 1.0, "c": 1.05}
    order = [stats.run_order(list(BY_HAND), r) for r in range(ROUNDS)]
    variants = {}
    for key, want in BY_HAND.items():
        runs = [run(key, r, round(BASE_NS * WRITES * DRIFT[r] * factors[key]), 30 + r)
                for r in range(ROUNDS)]
        variants[key] = {
            "name": want["name"], "what": f"variant {key}", "registrations": want["registrations"],
            "ioctl": want["ioctl"], "guest_cooperation": want["shadow"],
            "warmup": run(key, -1, BASE_NS * WRITES * 3, 29), "runs": runs,
            "summary": summary_of(runs),
            "path": {"ioctl": want["ioctl"], "removed": want["removed"],
                     "errors": {k: [] if v else ["ENOENT"] for k, v in want["removed"].items()},
                     "registrations": want["registrations"]},
        }
    return {"schema": 2, "scenario": "doorbell-bank", "kernel": "6.12.117-iofd-deadbeef",
            "guest_cpu": "QEMU TCG", "vcpus": 1, "queues": 64, "doorbell_bytes": 4,
            "writes": WRITES, "seed": 16, "rounds": ROUNDS,
            "pattern": {"max_tail": 20, "entries": 812, "queues_written": 64},
            "b_eventfds": "shared", "order": order, "variants": variants, "seconds": 31.5}


def build(dev: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = make_raw()
    raw["device"] = make_device() if dev is None else dev
    return report.build(raw, ENV)


def by_rule(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["rule"]: r for r in results}


# --- the record ------------------------------------------------------------------------
def test_bench_json_gets_a_device_key_and_keeps_the_others() -> None:
    plain = report.build(make_raw(), ENV)
    bench = build()
    assert set(bench) == set(plain)  # device was already there (None), nothing else changed
    assert plain["device"] is None
    dev = bench["device"]
    assert (dev["writes"], dev["rounds"], dev["queues"], dev["seconds"]) == (WRITES, ROUNDS, 64, 31.5)
    assert list(dev["variants"]) == ["a", "b", "c"]
    assert dev["variants"]["c"]["ns_per_write"] == [BASE_NS * d * 1.05 for d in DRIFT]
    assert [v["path"]["registrations"] for v in dev["variants"].values()] == [0, 64, 1]
    json.loads(json.dumps(bench))


def test_the_host_makes_the_checks_from_the_runs() -> None:
    """The output above says nothing about checks; the host finds all 15."""
    checks_ = build()["device"]["checks"]
    assert len(checks_) == 15 and all(c["ok"] for c in checks_)
    exits = {c["variant"]: c["value"] for c in checks_ if c["name"] == "userspace exits per run"}
    assert exits == {"a": [WRITES + 1], "b": [1], "c": [1]}
    tails = [c for c in checks_ if c["name"].startswith("runs whose consumed tails")]
    assert [(c["value"], c["expected"]) for c in tails] == [(ROUNDS + 1, ROUNDS + 1)] * 3


@pytest.mark.parametrize(("spoil", "says"), [
    (lambda d: d["variants"]["c"]["runs"][2].update(tails_ok=False), "consumed tails"),
    (lambda d: d["variants"]["c"]["runs"][0].update(userspace_exits=2), "userspace exits"),
    (lambda d: d["variants"]["b"]["warmup"].update(signals=WRITES - 1), "eventfd signals"),
    (lambda d: d["variants"]["b"]["path"].update(registrations=63), "registrations"),
    (lambda d: d["variants"]["c"]["path"]["errors"].update(KVM_IOEVENTFD=["EINVAL"]), "EINVAL"),
    (lambda d: d["variants"].pop("a"), "variant(s) a not run"),
    (lambda d: d["variants"]["a"]["runs"][1]["problems"].append("the guest ended early"),
     "(a) round 1: the guest ended early"),
])
def test_a_failed_device_check_fails_the_run(spoil: Any, says: str) -> None:
    """The output says nothing about checks: the host's verdict finds each."""
    dev = make_device()
    spoil(dev)
    with pytest.raises(checks.CountMismatch) as e:
        build(dev)
    assert says in str(e.value) and "device" in str(e.value)


def test_one_verify_reports_a_broken_mode_array_and_device_each_once() -> None:
    """The run's one verdict covers the three, and the host reports exactly
    it: each breach once, nothing from anywhere else."""
    raw = make_raw()
    raw["device"] = make_device()
    next(t for t in raw["runs"] if t["mode"] == "iofd-pio" and t["trial"] == 3)["doorbell"] = 0
    raw["array"]["repeats"][1]["iofd"].update(accepted=0, refused="EEXIST")
    raw["device"]["variants"]["b"]["path"]["registrations"] = 63
    verdict = checks.verify(raw)
    assert verdict.problems == [
        "iofd-pio trial 3: doorbell = 0, must be 1000",
        "array repeat 1: KVM_IOFD over the array refused with 'EEXIST', must be accepted",
        "device: (b) path: shadow-ioeventfd: 63 registrations found, 64 expected",
        "device: check failed: (b) registrations: 63, expected 64",
    ]
    assert [(r["mode"], r["check"]) for r in verdict.rows if not r["ok"]] == [("iofd-pio", "doorbell")]
    assert [(c["variant"], c["name"]) for c in verdict.device if not c["ok"]] == [("b", "registrations")]
    with pytest.raises(checks.CountMismatch) as e:
        report.build(raw, ENV)
    assert e.value.problems == verdict.problems


@pytest.mark.parametrize("schema", [1, 3])
def test_another_schema_is_refused(schema: int) -> None:
    """1 is the scenario's output from before its verdict moved to the host."""
    dev = make_device()
    dev["schema"] = schema
    with pytest.raises(ValueError, match=f"schema {schema}"):
        build(dev)


# --- the targets -----------------------------------------------------------------------
def test_targets_are_paired_per_round_from_the_raw_ns() -> None:
    dev = build()["device"]
    rules = by_rule(dev["targets"])
    assert set(rules) == {"c / b <= 1.1", "a / c >= 1.5"}
    assert rules["c / b <= 1.1"]["measured"] == pytest.approx(1.05)
    assert rules["c / b <= 1.1"]["iqr"] == [pytest.approx(1.05), pytest.approx(1.05)]
    assert rules["a / c >= 1.5"]["measured"] == pytest.approx(2.4 / 1.05)
    assert all(r["verdict"] == "pass" and r["ok"] is True and r["pairs"] == ROUNDS
               for r in dev["targets"])
    less = by_rule(dev["targets_less_device"])["c / b <= 1.1"]
    assert less["measured"] == pytest.approx(1.05, rel=1e-3)


def test_every_target_has_the_modes_then_the_device_named() -> None:
    bench = build()
    every = targets.every_target(bench)
    assert every[:len(bench["targets"])] == bench["targets"]
    assert [r["rule"] for r in every[len(bench["targets"]):]] == ["device c / b <= 1.1",
                                                                  "device a / c >= 1.5"]
    no_device = report.build(make_raw(), ENV)
    assert targets.every_target(no_device) == no_device["targets"]


def _slow_c(factor: float, spread: tuple[float, ...] = (0.0,) * ROUNDS) -> dict[str, Any]:
    """Scenario output whose (c) is ``factor`` x (b) in each round, plus ``spread``."""
    dev = make_device()
    for r, extra in zip(dev["variants"]["c"]["runs"], spread, strict=True):
        b = dev["variants"]["b"]["runs"][r["round"]]["ns"]
        r["ns"] = round(b * (factor + extra))
    return dev


@pytest.mark.parametrize(("dev", "strict", "rc", "says"), [
    (make_device(), True, 0, "every target met"),
    (_slow_c(1.20), False, 0, "device c / b <= 1.1"),
    (_slow_c(1.20), True, 1, "device c / b <= 1.1"),
    (_slow_c(1.10, (-0.04, 0.03, 0.0, 0.05, -0.02)), True, 0, "undecided"),
])
def test_strict_judges_the_device_targets_too(dev: dict[str, Any], strict: bool, rc: int, says: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from harness.bench import host

    bench = build(copy.deepcopy(dev))
    assert host.verdict(targets.every_target(bench), strict) == rc
    assert says in capsys.readouterr().err


def test_a_straddle_is_undecided_not_a_miss() -> None:
    r = by_rule(build(_slow_c(1.10, (-0.04, 0.03, 0.0, 0.05, -0.02)))["device"]["targets"])
    assert (r["c / b <= 1.1"]["verdict"], r["c / b <= 1.1"]["ok"]) == ("straddle", None)


# --- bench.md and the console ----------------------------------------------------------
def device_md(bench: dict[str, Any]) -> str:
    md = report.markdown(bench)
    start = md.index("## Doorbell bank")
    return md[start:md.index("## Notes")]


def test_markdown_has_the_device_section_per_variant() -> None:
    md = device_md(build())
    table = md[:md.index("### Checks")]
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| (")}
    # ns per write: (b) over the rounds is 20000 x DRIFT, median 22000
    assert "| 22,000 (19,000-32,000) |" in rows["| (b) shadow-ioeventfd"]
    assert f"| {WRITES + 1} | 32 (30-34) |" in rows["| (a) userspace"]  # exits, wakeups
    assert rows["| (b) shadow-ioeventfd"].startswith("| (b) shadow-ioeventfd | 64 (KVM_IOEVENTFD)")
    assert rows["| (c) iofd-buffer"].startswith("| (c) iofd-buffer | 1 (KVM_IOFD) | no")
    assert rows["| (a) userspace"].startswith("| (a) userspace | 0 (none) | no")
    checks_table = md[md.index("### Checks"):md.index("### Targets")]
    assert f"| (a) userspace | {WRITES + 1} | {WRITES} | 6 | 0 | 6 | ok |" in checks_table
    assert "Final-tail check (passed)" in md and "(c) 6 of 6" in md
    assert "`(c) iofd-buffer / (b) shadow-ioeventfd <= 1.1` | 1.050 | 1.050-1.050" in md
    assert "`(a) userspace / (c) iofd-buffer >= 1.5` | 2.286" in md
    assert "2 of 2 targets met." in md


def test_markdown_shows_a_device_miss() -> None:
    md = device_md(build(_slow_c(1.20)))
    assert "| 1.200 | 1.200-1.200 (94%) | 1.200 | **MISS** |" in md
    assert "1 of 2 targets met; missed: (c) iofd-buffer / (b) shadow-ioeventfd <= 1.1." in md


def test_without_the_scenario_the_section_says_so() -> None:
    md = report.markdown(report.build(make_raw(), ENV))
    assert "## Doorbell bank" in md and "Not measured in this run." in md.split("## Doorbell bank")[1]
    assert "doorbell bank" not in report.terminal(report.build(make_raw(), ENV))


def test_the_console_prints_the_device_section() -> None:
    text = report.terminal(build())
    section = text[text.index("doorbell bank, device scenario"):]
    assert f"{WRITES} writes x {ROUNDS} rounds" in section
    assert (f"(a) userspace: 52,800 (45,600-76,800) ns/write, {WRITES + 1} userspace exits/run, "
            "32 (30-34) device wakeups/run, 0 registrations") in section
    assert "1 userspace exits/run" in section and "64 registrations" in section
    assert "checks: 15 of 15 ok" in section and "Final-tail check (passed)" in section
    assert "pass  (c) iofd-buffer / (b) shadow-ioeventfd <= 1.1" in section
    assert "2 of 2 targets met." in section


# --- the chart -------------------------------------------------------------------------
def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_chart_gets_a_device_row(tmp_path: Path) -> None:
    """18 inches high with the device row, 14 without, at 110 dpi."""
    chart.draw(build(), tmp_path / "with.png", report.SEED)
    chart.draw(report.build(make_raw(), ENV), tmp_path / "without.png", report.SEED)
    assert png_size(tmp_path / "with.png") == (1320, 1980)
    assert png_size(tmp_path / "without.png") == (1320, 1540)


def test_render_writes_the_device_into_every_output(tmp_path: Path) -> None:
    raw = make_raw()
    raw["device"] = make_device()
    bench = report.render(raw, ENV, tmp_path)
    assert json.loads((tmp_path / "bench.json").read_text())["device"] == bench["device"]
    assert "## Doorbell bank" in (tmp_path / "bench.md").read_text()
    assert summary.device(None, []) is None
