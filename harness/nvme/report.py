"""The NVMe table from the runner's raw JSON: entries, targets, and the files.

One entry per configuration and queue depth.  Counts per I/O (exits,
userspace exits, MMIO exits, from L1's KVM statistics: see
:mod:`payload.nvme.counters`) come from the wall-clock run; instructions
per I/O from the run under icount, where L1's clock counts instructions
(everything L1 executes: its kernel, both QEMU threads and the L2 guest).
Wall-clock figures are reported beside them and decide nothing: under
TCG they scatter by more than the differences the table is about.
Each figure is the median over its run's rounds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from payload.nvme.configs import BY_NAME, QDS

OUTPUTS = ("nvme.json", "nvme.md", "nvme.png")


def _per_io(job: dict[str, Any]) -> dict[str, float | None]:
    ios = job["fio"]["ios"] or 0
    if ios <= 0:
        return {}
    stats = job["counts"].get("stats", {})
    out: dict[str, float | None] = {
        "ns_per_io": job["ns"] / ios,
        "exits_per_io": stats.get("exits", 0) / ios,
        "mmio_exits_per_io": stats.get("mmio_exits", 0) / ios,
        "iops": job["fio"]["iops"],
        "clat_p50_us": (job["fio"]["clat_ns"].get("p50") or 0) / 1000,
        "clat_p99_us": (job["fio"]["clat_ns"].get("p99") or 0) / 1000,
    }
    if "userspace_exits" in job["counts"]:
        out["userspace_exits_per_io"] = job["counts"]["userspace_exits"] / ios
    return out


def _median(jobs: list[dict[str, Any]], key: str) -> float | None:
    vals = [v for j in jobs if (v := _per_io(j).get(key)) is not None]
    return statistics.median(vals) if vals else None


def _jobs(raw: dict[str, Any] | None, config: str, qd: int) -> list[dict[str, Any]]:
    if not raw:
        return []
    return [j for j in raw["jobs"] if j["config"] == config and j["qd"] == qd]


def entries(plain: dict[str, Any], counted: dict[str, Any] | None,
            verify: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    configs = list(dict.fromkeys(j["config"] for j in plain["jobs"]))
    for c in configs:
        for qd in sorted({j["qd"] for j in plain["jobs"] if j["config"] == c}):
            p, i, v = _jobs(plain, c, qd), _jobs(counted, c, qd), _jobs(verify, c, qd)
            e: dict[str, Any] = {
                "config": c, "qd": qd, "meaning": BY_NAME[c].meaning, "rounds": len(p),
                "iops": _median(p, "iops"),
                "exits_per_io": _median(p, "exits_per_io"),
                "userspace_exits_per_io": _median(p, "userspace_exits_per_io"),
                "mmio_exits_per_io": _median(p, "mmio_exits_per_io"),
                "instructions_per_io": _median(i, "ns_per_io") if i else None,
                "ns_per_io": _median(p, "ns_per_io"),
                "clat_p50_us": _median(p, "clat_p50_us"),
                "clat_p99_us": _median(p, "clat_p99_us"),
                "fio_failures": sum(1 for j in p + i if j["rc"] != 0),
            }
            if v:
                e["verify_errors"] = sum((j["fio"]["errors"] or 0) + (j["rc"] != 0) for j in v)
            out.append(e)
    return out


def _get(es: list[dict[str, Any]], config: str, qd: int) -> dict[str, Any] | None:
    return next((e for e in es if e["config"] == config and e["qd"] == qd), None)


def targets(es: list[dict[str, Any]], wall_decides: bool = True) -> list[dict[str, Any]]:
    """Every target the issue sets, met, missed, or not measured (a row
    missing from the run), with the figures it was decided on.  Cost
    targets are decided on instructions per I/O; without them, on wall
    time only if *wall_decides* (under KVM; under TCG wall time is noise,
    so those targets are then not measured)."""
    out: list[dict[str, Any]] = []

    def add(rule: str, met: bool | None, figures: str) -> None:
        out.append({"rule": rule, "met": met, "figures": figures})

    def cost(e: dict[str, Any] | None) -> tuple[float | None, str]:
        if e is None:
            return None, ""
        if e["instructions_per_io"] is not None:
            return e["instructions_per_io"], "instructions"
        if not wall_decides:
            return None, ""
        return e["ns_per_io"], "wall ns"

    p0, p1 = _get(es, "P0", 1), _get(es, "P1", 1)
    if p0 and p1 and p0["userspace_exits_per_io"] is not None and \
            p1["userspace_exits_per_io"] is not None:
        d = p0["userspace_exits_per_io"] - p1["userspace_exits_per_io"]
        add("P1's userspace exits per I/O at least 1.8 below P0's at QD1", d >= 1.8,
            f"P0 {p0['userspace_exits_per_io']:.2f}, P1 {p1['userspace_exits_per_io']:.2f}, "
            f"difference {d:.2f}")
    else:
        add("P1's userspace exits per I/O at least 1.8 below P0's at QD1", None, "not measured")
    for qd in QDS:
        (a, basis), (b, _) = cost(_get(es, "P1", qd)), cost(_get(es, "P0", qd))
        add(f"P1 costs less per I/O than P0 at QD{qd}", None if a is None or b is None else a < b,
            "not measured" if a is None or b is None else
            f"P1 {a:.0f}, P0 {b:.0f} {basis} per I/O (P1/P0 {a / b:.3f})")
    (a, basis), (b, _) = cost(_get(es, "P1", 1)), cost(_get(es, "S1", 1))
    add("P1 within 10% of S1 per I/O at QD1", None if a is None or b is None else a <= 1.10 * b,
        "not measured" if a is None or b is None else
        f"P1 {a:.0f}, S1 {b:.0f} {basis} per I/O (P1/S1 {a / b:.3f})")
    for qd in QDS:
        (a, basis), (b, _) = cost(_get(es, "P2", qd)), cost(_get(es, "S1", qd))
        add(f"P2 within 1% of S1 per I/O at QD{qd}",
            None if a is None or b is None else abs(a / b - 1) <= 0.01,
            "not measured" if a is None or b is None else
            f"P2 {a:.0f}, S1 {b:.0f} {basis} per I/O (P2/S1 {a / b:.4f})")
    verified = [e for e in es if "verify_errors" in e]
    errors = sum(e["verify_errors"] for e in verified)
    add("0 verify errors", errors == 0 if verified else None,
        f"{errors} over " + ", ".join(f"{e['config']} QD{e['qd']}" for e in verified)
        if verified else "no verify job ran")
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(es: list[dict[str, Any]], ts: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        "# QEMU NVMe on KVM_IOFD (make nvme)", "",
        f"fio randread 4 KiB, direct, io_uring, {env.get('ios')} I/Os per job, on null-co; "
        f"L1 kernel {env.get('kernel')}, {env.get('accel')}; QEMU series {env.get('qemu_series')}.",
        "Instructions per I/O are L1's (kernel, QEMU, L2 guest) under icount; "
        "exits from L1's KVM statistics (userspace exits: MMIO exactly, port I/O and "
        "signals as an upper bound); wall-clock figures decide nothing.",
        *([f"The icount pass: {env['icount']}."] if env.get("icount") else []), "",
        "| config | QD | IOPS | exits/IO | userspace exits/IO | MMIO exits/IO | instructions/IO "
        "| wall µs/IO | clat p50 µs | clat p99 µs | verify errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in es:
        lines.append(
            f"| {e['config']} | {e['qd']} | {_fmt(e['iops'], '.0f')} | "
            f"{_fmt(e['exits_per_io'], '.2f')} | {_fmt(e['userspace_exits_per_io'], '.2f')} | "
            f"{_fmt(e['mmio_exits_per_io'], '.2f')} | {_fmt(e['instructions_per_io'], '.0f')} | "
            f"{_fmt(e['ns_per_io'] and e['ns_per_io'] / 1000, '.1f')} | "
            f"{_fmt(e['clat_p50_us'], '.0f')} | {_fmt(e['clat_p99_us'], '.0f')} | "
            f"{e.get('verify_errors', '-')} |")
    lines += ["", "| config | QEMU | what it stands for |", "|---|---|---|"]
    for name in dict.fromkeys(e["config"] for e in es):
        c = BY_NAME[name]
        lines.append(f"| {name} | {c.qemu}{' ' + c.options if c.options else ''} | {c.meaning} |")
    lines += ["", "## Targets", ""]
    for t in ts:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"- {mark}: {t['rule']} ({t['figures']})")
    return "\n".join(lines) + "\n"


def chart(es: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(dict.fromkeys(e["config"] for e in es))
    qds = sorted({e["qd"] for e in es})
    width = 0.8 / max(1, len(names))
    for k, n in enumerate(names):
        ys = [(_get(es, n, q) or {}).get("instructions_per_io") or 0 for q in qds]
        ax.bar([i + k * width for i in range(len(qds))], ys, width, label=n)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(qds))],
                  [f"QD{q}" for q in qds])
    ax.set_ylabel("L1 instructions per I/O (icount)")
    ax.set_title("fio randread 4 KiB on QEMU NVMe, nested")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(plain: dict[str, Any], counted: dict[str, Any] | None, verify: dict[str, Any] | None,
           env: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    es = entries(plain, counted, verify)
    ts = targets(es, wall_decides=env.get("accel") != "tcg")
    doc = {"schema": 1, "environment": env, "entries": es, "targets": ts}
    (out_dir / "nvme.json").write_text(json.dumps(doc, indent=1))
    (out_dir / "nvme.md").write_text(markdown(es, ts, env))
    chart(es, out_dir / "nvme.png")
    return doc
