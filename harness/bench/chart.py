"""``results/bench.png``: median rtt per mode, min-max as error bars.

Drawn on an Agg canvas object rather than through pyplot, so it needs no
display, touches no global backend state and works in any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from payload.bench import modes

COLOURS = {
    "userspace": "#c0504d",
    "iofd": "#4f81bd",
    "ioeventfd": "#9bbb59",
    "kernel": "#7f7f7f",
    "cpuid": "#bfbfbf",
}


def draw(bench: Mapping[str, Any], path: Path) -> Path:
    """Write the chart to ``path`` (PNG) and return it."""
    names = [m for m in modes.NAMES if m in bench["modes"]]
    rtt = [bench["modes"][m]["rtt_us"] for m in names]
    med = [r["median"] for r in rtt]
    err = [[r["median"] - r["min"] for r in rtt], [r["max"] - r["median"] for r in rtt]]

    fig = Figure(figsize=(9, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.bar(names, med, yerr=err, capsize=4,
                  color=[COLOURS[modes.get(m).path] for m in names], edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in med], padding=6, fontsize=8)
    ax.set_ylabel("round trip per guest write (µs), median; bars: min-max")
    ax.set_title(f"KVM_IOFD doorbell, {bench['kernel']} ({bench['accel']}), "
                 f"{bench['trials']} x {bench['iterations']} writes per mode", fontsize=10)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylim(0, max(r["max"] for r in rtt) * 1.15)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
