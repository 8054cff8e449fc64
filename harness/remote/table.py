"""Several hosts' results side by side: one column per host.

``results/remote/hosts.md`` and ``hosts.json``.  A host that failed keeps
its column, with its error in it, so a table never silently loses a host.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.bench import summary, targets
from harness.remote.jobs import Outcome
from payload.vmexit import modes

RATIOS = (("userspace-pio", "iofd-pio"), ("userspace-mmio", "iofd-mmio"),
          ("iofd-pio", "ioeventfd-pio"), ("iofd-mmio", "ioeventfd-mmio"),
          ("iofd-pio", "kernel-pio"))


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _column(o: Outcome) -> dict[str, str]:
    """Row name -> this host's cell."""
    info = o.info
    col = {"host": info.get("hostname", "?"), "kernel": info.get("kernel", "?"),
           "CPU": f"{info.get('cpu', '?')} ({info.get('cpus', '?')} CPUs)",
           "status": "ok" if o.ok else f"**FAILED**: {o.error}"}
    if o.bench is not None:
        for name in modes.NAMES:
            rec = o.bench["modes"].get(name)
            col[f"{name} rtt µs"] = "-" if rec is None else f"{rec['rtt_us']['median']:.3f}"
        for a, b in RATIOS:
            r = summary.ratio(o.bench, a, b)
            col[f"{a} / {b}"] = "-" if r is None else f"{r:.2f}"
        met = [r for r in o.bench["targets"] if r["ok"]]
        col["targets met"] = f"{len(met)} of {len(o.bench['targets'])}"
        missed = targets.misses(o.bench["targets"])
        if missed:
            col["targets missed"] = ", ".join(m["rule"] for m in missed)
    if o.counts is not None:
        c = o.counts
        col["guest tests"] = (f"{c['tests']} run, {c['failures']} failed, {c['errors']} errors, "
                              f"{c['skipped']} skipped")
    return col


def markdown(outcomes: Sequence[Outcome]) -> str:
    cols = [_column(o) for o in outcomes]
    rows: list[str] = []
    for col in cols:
        rows += [r for r in col if r not in rows]
    lines = ["| | " + " | ".join(_cell(o.address.label) for o in outcomes) + " |",
             "|---|" + "---|" * len(outcomes)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(_cell(c.get(row, "-")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def record(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    return [{"url": o.address.url, "label": o.address.label, "ok": o.ok, "error": o.error,
             "host": o.info, "bench": o.bench, "tests": o.counts} for o in outcomes]


def write(outcomes: Sequence[Outcome], out_root: Path) -> tuple[Path, Path]:
    out_root.mkdir(parents=True, exist_ok=True)
    md, js = out_root / "hosts.md", out_root / "hosts.json"
    md.write_text("# KVM_IOFD on remote hosts\n\n" + markdown(outcomes))
    js.write_text(json.dumps(record(outcomes), indent=1) + "\n")
    return md, js
