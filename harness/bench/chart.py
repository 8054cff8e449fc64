"""``results/bench.png``: median rtt per mode, min-max as error bars; the
2009 posting's five rows beside today's and the scale rows' paired ratios
to their 0-registration row; below them each target's paired median and
95% confidence interval against its limit; at the bottom, when it ran, the doorbell-bank
scenario's variants (ns per doorbell write) and its two targets.

Drawn on an Agg canvas object rather than through pyplot, so it needs no
display, touches no global backend state and works in any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.bench import summary
from payload.vmexit import modes

COLOURS = {
    "userspace": "#c0504d",
    "iofd": "#4f81bd",
    "ioeventfd": "#9bbb59",
    "kernel": "#7f7f7f",
    "cpuid": "#bfbfbf",
    "hyperv": "#8064a2",
    "hypercall": "#b2a2c7",
}


def _hatch(mode: modes.Mode) -> str:
    """Variants share their family's colour and differ by hatching: ``//``
    for a buffer-keeping iofd, ``..`` for the zero-length ioeventfd."""
    if mode.buffered:
        return "//"
    return ".." if mode.registration == "KVM_IOEVENTFD" and mode.ioeventfd_len == 0 else ""


def _rtt_panel(ax: Axes, bench: Mapping[str, Any]) -> None:
    """Median rtt per mode, min-max as error bars."""
    names = [m for m in modes.NAMES if m in bench["modes"]]
    rtt = [bench["modes"][m]["rtt_us"] for m in names]
    med = [r["median"] for r in rtt]
    err = [[r["median"] - r["min"] for r in rtt], [r["max"] - r["median"] for r in rtt]]
    bars = ax.bar(names, med, yerr=err, capsize=4,
                  color=[COLOURS[modes.get(m).path] for m in names], edgecolor="black", linewidth=0.5,
                  hatch=[_hatch(modes.get(m)) for m in names])
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in med], padding=6, fontsize=8)
    ax.set_ylabel("round trip per guest write (µs)\nmedian; bars: min-max", fontsize=9)
    ax.set_title(f"KVM_IOFD doorbell, {bench['kernel']} ({bench['accel']}), "
                 f"{bench['trials']} x {bench['iterations']} writes per mode", fontsize=10)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylim(0, max(r["max"] for r in rtt) * 1.15)
    ax.grid(axis="y", alpha=0.3)


SCALE_COLOURS = {"iofd-pio": "#4f81bd", "iofd-mmio": "#1f3f6f", "ioeventfd-pio": "#9bbb59"}

VERDICT_COLOURS = {"pass": "#4f81bd", "miss": "#c0504d", "straddle": "#f79646"}


def _targets_panel(ax: Axes, results: list[dict[str, Any]]) -> None:
    """Each target as its limit over 1 (a vertical tick at 1.0 is the
    limit), the paired median a dot and its 95% confidence interval a bar, coloured by verdict;
    the ratio of medians a small cross."""
    shown = [r for r in results if r.get("measured") is not None]
    ys = list(range(len(shown)))[::-1]
    for y, r in zip(ys, shown, strict=True):
        limit = r["limit"]
        q1, q3 = (x / limit for x in r["ci"])
        colour = VERDICT_COLOURS.get(r["verdict"], "#7f7f7f")
        ax.plot([q1, q3], [y, y], color=colour, linewidth=4, alpha=0.5, solid_capstyle="butt")
        ax.plot([r["measured"] / limit], [y], "o", color=colour)
        ax.plot([r["ratio_of_medians"] / limit], [y], "x", color="black", markersize=5)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(ys, [f"{r['rule']} ({r['verdict']})" for r in shown], fontsize=8)
    ax.set_xlabel("paired median (dot) and 95% CI (bar) / limit; x: ratio of medians / limit. "
                  "<= targets pass left of 1, >= targets right of it", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _seed_panel(ax: Axes, bench: Mapping[str, Any], seed: Mapping[str, tuple[float, str]]) -> None:
    """The 2009 posting's five rows beside today's, each as a ratio to its
    own run's iofd-pio (absolute times are not comparable); a row not
    measured today has no bar of today's colour."""
    ours = {m.seed_name: m.name for m in modes.MODES if m.seed_name}
    names = list(seed)
    then = [rtt / seed["iofd-pio"][0] for rtt, _ in seed.values()]
    now = [summary.ratio(bench, ours[n], "iofd-pio") if n in ours else None for n in names]
    xs = range(len(names))
    width = 0.38
    old = ax.bar([x - width / 2 for x in xs], then, width, color="#d9d9d9", edgecolor="black",
                 linewidth=0.5, label="2009 posting", hatch=["" if how == "measured" else "xx"
                                                            for _, how in seed.values()])
    new = ax.bar([x + width / 2 for x in xs], [v or 0 for v in now], width, color="#4f81bd",
                 edgecolor="black", linewidth=0.5, label="this run")
    ax.bar_label(old, labels=[f"{v:.2f}" for v in then], fontsize=7, padding=2)
    ax.bar_label(new, labels=["n/a" if v is None else f"{v:.2f}" for v in now], fontsize=7, padding=2)
    ax.set_xticks(list(xs), [f"{n}\n= {ours.get(n, '-')}" for n in names], fontsize=6)
    ax.set_ylabel("rtt / iofd-pio of the same run", fontsize=8)
    ax.set_title("the 2009 rows then and now (hatched: extrapolated in 2009)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _scale_panel(ax: Axes, bench: Mapping[str, Any]) -> None:
    """Per scaled mode, the paired ratio to its 0-registration row against
    the number of other registrations (log axis; 0 drawn at 1), the median's 95% CI as
    error bars, and the target's limit as a dashed line."""
    by_a = {r["a"]: r for r in bench.get("targets", [])}
    limit = None
    for base in modes.SCALED:
        rows = [m for m in modes.SCALE_MODES if m.base == base and m.name in by_a
                and by_a[m.name].get("measured") is not None]
        if base not in bench["modes"] or not rows:
            continue
        xs = [1] + [m.others for m in rows]
        med = [1.0] + [by_a[m.name]["measured"] for m in rows]
        lo = [0.0] + [by_a[m.name]["measured"] - by_a[m.name]["ci"][0] for m in rows]
        hi = [0.0] + [by_a[m.name]["ci"][1] - by_a[m.name]["measured"] for m in rows]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=base,
                    color=SCALE_COLOURS.get(base, "#7f7f7f"))
        limit = by_a[rows[0].name]["limit"]
    if limit is not None:
        ax.axhline(limit, color="#c0504d", linestyle="--", linewidth=0.8, label=f"target {limit:g}")
        ax.legend(fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xticks([1, 10, 100, 990], ["0", "10", "100", "990"])
    ax.set_xlabel("other registrations on the same bus", fontsize=8)
    ax.set_ylabel("paired rtt ratio to 0 registrations\nmedian; bars: 95% CI", fontsize=8)
    ax.set_title("cost against registrations on the bus", fontsize=9)
    ax.grid(alpha=0.3)


DEVICE_COLOURS = {"a": COLOURS["userspace"], "b": COLOURS["ioeventfd"], "c": COLOURS["iofd"]}


def _device_panel(ax: Axes, dev: Mapping[str, Any]) -> None:
    """The doorbell-bank scenario: median guest-side ns per doorbell write
    per variant, min-max as error bars, each bar labelled with its
    userspace exits, device wakeups and registrations per run."""
    keys = list(dev["variants"])
    spreads = [dev["variants"][k]["summary"]["ns_per_write"] for k in keys]
    med = [s["median"] for s in spreads]
    err = [[s["median"] - s["min"] for s in spreads], [s["max"] - s["median"] for s in spreads]]
    bars = ax.bar([f"({k}) {dev['variants'][k]['name']}" for k in keys], med, yerr=err, capsize=4,
                  color=[DEVICE_COLOURS.get(k, "#7f7f7f") for k in keys], edgecolor="black",
                  linewidth=0.5, hatch=["//" if k == "c" else "" for k in keys])
    labels = []
    for k, m in zip(keys, med, strict=True):
        v = dev["variants"][k]
        labels.append(f"{m:,.0f} ns\n{v['summary']['userspace_exits']['median']:.0f} exits, "
                      f"{v['summary']['wakeups']['median']:.0f} wakeups\n"
                      f"{v['path']['registrations']} registrations")
    ax.bar_label(bars, labels=labels, padding=4, fontsize=7)
    ax.set_ylim(0, max(s["max"] for s in spreads) * 1.45)
    ax.set_ylabel("guest-side ns per doorbell write\nmedian; bars: min-max", fontsize=8)
    ax.set_title(f"doorbell bank: {dev['queues']} queues, {dev['rounds']} rounds x "
                 f"{dev['writes']} writes", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", alpha=0.3)


def _device_rows(dev: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The scenario's targets with the variants named in the rule."""
    name = {k: f"({k}) {v['name']}" for k, v in dev["variants"].items()}
    return [{**r, "rule": f"{name.get(r['a'], r['a'])} /\n{name.get(r['b'], r['b'])} "
                          f"{r['op']} {r['limit']:g}"} for r in dev["targets"]]


def draw(bench: Mapping[str, Any], path: Path,
         seed: Mapping[str, tuple[float, str]] | None = None) -> Path:
    """Write the chart to ``path`` (PNG) and return it; ``seed`` is the 2009
    posting's rows (:data:`harness.bench.report.SEED`), its panel left out
    without it."""
    dev = bench.get("device")
    fig = Figure(figsize=(12, 18 if dev else 14), dpi=110)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4 if dev else 3, 2, height_ratios=[3, 2.2, 3, 2.6][:4 if dev else 3])
    _rtt_panel(fig.add_subplot(grid[0, :]), bench)
    if seed:
        _seed_panel(fig.add_subplot(grid[1, 0]), bench, seed)
    _scale_panel(fig.add_subplot(grid[1, 1] if seed else grid[1, :]), bench)
    _targets_panel(fig.add_subplot(grid[2, :]), bench.get("targets", []))
    if dev:
        _device_panel(fig.add_subplot(grid[3, 0]), dev)
        ax = fig.add_subplot(grid[3, 1])
        _targets_panel(ax, _device_rows(dev))
        ax.set_ylim(-0.6, max(len(dev["targets"]) - 0.4, 0.6))
        ax.set_xlabel("paired median (dot), 95% CI (bar), ratio of medians (x), each / limit;\n"
                      "<= passes left of 1, >= right of it", fontsize=7)
        ax.set_title("doorbell bank targets", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
