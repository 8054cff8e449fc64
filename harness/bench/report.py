"""Raw trials -> ``results/bench.json``, ``bench.md`` and ``bench.png``.

The markdown is meant to be pasted into the cover letter as is, so it
carries its environment, its definitions, every check with what it
measured, and every target with the number measured against it; a missed
target reads MISS there, in the same table as the ones that passed, and one
the run could not decide reads "undecided".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.bench import icount, summary, targets
from payload.vmexit import modes

SEED = {  # the 2009 posting: rtt in µs, and whether it was measured
    "qemu-mmio": (9.09, "measured"),
    "iofd-mmio": (5.00, "measured"),
    "iofd-pio": (2.72, "measured"),
    "qemu-pio": (6.53, "extrapolated"),
    "iofd-hc": (2.37, "extrapolated"),
}
OUTPUTS = ("bench.json", "bench.md", "bench.png")


def _ratio(bench: Mapping[str, Any], a: str, b: str) -> str:
    r = summary.ratio(bench, a, b)
    return "n/a" if r is None else f"{r:.2f}"


VERDICTS = {
    "pass": "pass",
    "miss": "**MISS**",
    "straddle": "undecided: the limit is inside the median's confidence interval",
    "n/a": "n/a (mode not run)",
}


def _verdict(r: Mapping[str, Any]) -> str:
    return VERDICTS[r.get("verdict", "n/a")]


def _shown(m: float | int | None) -> str:
    return "n/a" if m is None else (f"{m:.3f}" if isinstance(m, float) else str(m))


def _ci(r: Mapping[str, Any]) -> str:
    """The paired median's confidence interval, with its coverage when
    the rounds gave less than the 95 % asked for."""
    if r.get("ci") is None:
        return "n/a"
    cov = r.get("ci_coverage")
    low = f" ({cov:.0%})" if cov is not None and cov < 0.95 else ""
    return f"{r['ci'][0]:.3f}-{r['ci'][1]:.3f}{low}"


def _doorbell(bench: Mapping[str, Any], name: str) -> str:
    want = bench.get("doorbell_expected", {}).get(name)
    state = "exact" if bench["modes"][name]["doorbell_exact"] else "OFF"
    return f"{state} ({want}/trial)" if want is not None else state


def results_table(bench: Mapping[str, Any]) -> str:
    """The main table, one row per mode in canonical order."""
    lines = [
        "| mode | 2009 name | iops | rtt µs (median) | rtt µs (min-max) "
        "| vs userspace-mmio | vs kernel-pio | userspace exits/trial | doorbell |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in (m for m in modes.NAMES if m in bench["modes"]):
        rec = bench["modes"][name]
        rtt = rec["rtt_us"]
        lines.append(
            f"| {name} | {modes.get(name).seed_name or '-'} | {rec['iops']} | {rtt['median']:.2f} "
            f"| {rtt['min']:.2f}-{rtt['max']:.2f} | {_ratio(bench, name, 'userspace-mmio')} "
            f"| {_ratio(bench, name, 'kernel-pio')} | {rec['userspace_exits_per_trial']} "
            f"| {_doorbell(bench, name)} |"
        )
    return "\n".join(lines)


def targets_summary(results: list[dict[str, Any]]) -> str:
    """``6 of 8 targets met; missed: ...; undecided ...: ...``."""
    met = sum(1 for r in results if r["ok"])
    text = f"{met} of {len(results)} targets met"
    missed, open_ = targets.misses(results), targets.straddles(results)
    if missed:
        text += f"; missed: {', '.join(r['rule'] for r in missed)}"
    if open_:
        text += (f"; undecided (the limit is inside the median's confidence interval): "
                 f"{', '.join(r['rule'] for r in open_)}")
    return text + "."


def targets_table(results: list[dict[str, Any]]) -> str:
    """Every target with the value measured against it; when it was decided
    on instructions, the wall-clock figure beside it (shown, not deciding)."""
    if any(r.get("basis") == icount.BASIS_INSTRUCTIONS for r in results):
        lines = ["| target | instructions: paired median | 95% CI | wall-clock: paired median "
                 "| 95% CI | wall-clock alone would say | result (on instructions) | why it matters |",
                 "|---|---:|---:|---:|---:|---|---|---|"]
        for r in results:
            w = r.get("wall") or {}
            lines.append(f"| `{r['rule']}` | {_shown(r['measured'])} | {_ci(r)} "
                         f"| {_shown(w.get('measured'))} | {_ci(w)} | {_verdict(w)} "
                         f"| {_verdict(r)} | {r['why']} |")
    else:
        lines = ["| target | paired median | 95% CI of the median | ratio of medians | result "
                 "| why it matters |", "|---|---:|---:|---:|---|---|"]
        for r in results:
            lines.append(f"| `{r['rule']}` | {_shown(r['measured'])} | {_ci(r)} "
                         f"| {_shown(r.get('ratio_of_medians'))} | {_verdict(r)} | {r['why']} |")
    lines += ["", targets_summary(results)]
    return "\n".join(lines)


def instructions_table(bench: Mapping[str, Any]) -> str:
    """Instructions per doorbell (the icount run) beside the wall-clock rtt,
    every mode and scale row, then the array and the device's variants."""
    counted = bench.get("icount")
    if counted is None:
        return ("Not measured in this run (icount needs TCG; under KVM and on SSH hosts the "
                "figures are wall-clock only).")
    lines = [icount.NOTE, "",
             f"{counted['trials']} rounds x {counted['iterations']} writes per mode.", "",
             "| mode | instructions per doorbell (median) | min-max | wall-clock rtt µs (median) |",
             "|---|---:|---:|---:|"]
    for name, rec in counted["modes"].items():
        p = rec["per_doorbell"]
        wall = bench["modes"].get(name, {}).get("rtt_us", {}).get("median")
        lines.append(f"| {name} | {p['median']:.1f} | {p['min']:.1f}-{p['max']:.1f} "
                     f"| {_shown(wall)} |")
    arr = counted.get("doorbell_array")
    if arr is not None:
        lines += ["", "| 1024-doorbell array | registrations | instructions to register (median) "
                      "| per registration |", "|---|---:|---:|---:|"]
        for side in ("ioeventfd", "iofd"):
            s = arr[side]
            lines.append(f"| {side} | {s['registrations']} | {s['register_instructions']:.0f} "
                         f"| {s['per_registration']:.0f} |")
        lines += ["", f"Registering the array as ioeventfds took {arr['register_ratio']:.1f}x the "
                      "instructions of the one KVM_IOFD."]
    dev = counted.get("device")
    if dev is not None:
        lines += ["", "| device variant | instructions per doorbell write (median) | min-max |",
                  "|---|---:|---:|"]
        for key, v in dev["variants"].items():
            p = v["per_write"]
            lines.append(f"| ({key}) {v['name']} | {p['median']:.1f} | {p['min']:.1f}-{p['max']:.1f} |")
    return "\n".join(lines)


CHECK_COLUMNS = (("exits", "userspace exits/trial"), ("doorbell", "doorbell/trial"),
                 ("iterations", "iterations (guest's count)"), ("status", "last hypercall status"),
                 ("buffer", "buffer after each trial"), ("path", "path: deassign after the trials"))


def checks_table(rows: list[dict[str, Any]]) -> str:
    """One row per mode, one column per check, each cell what was measured in
    every trial (with what it had to be when it failed; a report exists only
    when all passed).  "-": the check does not apply to the mode."""
    by_mode: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_mode.setdefault(r["mode"], {})[r["check"]] = r
    lines = ["| mode | " + " | ".join(title for _, title in CHECK_COLUMNS) + " | result |",
             "|---|" + "---|" * len(CHECK_COLUMNS) + "---|"]
    for name, mine in by_mode.items():
        cells = []
        for check, _ in CHECK_COLUMNS:
            r = mine.get(check)
            cells.append("-" if r is None else
                         r["measured"] + ("" if r["ok"] else f" (must be {r['expected']})"))
        ok = all(r["ok"] for r in mine.values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'ok' if ok else '**FAILED**'} |")
    return "\n".join(lines)


def seed_table(bench: Mapping[str, Any]) -> str:
    """The 2009 rows beside ours, as ratios to iofd-pio (absolute times are
    not comparable: 2009 bare metal against nested KVM under emulation)."""
    ours = {m.seed_name: m.name for m in modes.MODES if m.seed_name}
    base = SEED["iofd-pio"][0]
    lines = ["| 2009 path | 2009 rtt µs | 2009 / iofd-pio | here | here rtt µs | here / iofd-pio |",
             "|---|---:|---:|---|---:|---:|"]
    for seed_name, (rtt, how) in SEED.items():
        name = ours.get(seed_name)
        if name and name in bench["modes"]:
            median = bench["modes"][name]["rtt_us"]["median"]
            here = f"{name} | {median:.2f} | {_ratio(bench, name, 'iofd-pio')}"
        else:
            here = "not measured in this run | - | -"
        lines.append(f"| {seed_name} ({how}) | {rtt:.2f} | {rtt / base:.2f} | {here} |")
    return "\n".join(lines)


def _target_for(bench: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((r for r in bench["targets"] if r["a"] == name), None)


def scale_table(bench: Mapping[str, Any]) -> str:
    """Each scaled mode's 0-registration row, then its scale rows with the
    paired ratio to that row and the target's verdict."""
    lines = ["| mode | other registrations on the bus | rtt µs (median) | paired ratio to 0 "
             "| 95% CI of the median | ratio of medians | target | result |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for base in modes.SCALED:
        if base not in bench["modes"]:
            continue
        lines.append(f"| {base} | 0 | {bench['modes'][base]['rtt_us']['median']:.2f} "
                     "| 1 | - | - | - | reference |")
        for m in (m for m in modes.SCALE_MODES if m.base == base and m.name in bench["modes"]):
            t = _target_for(bench, m.name)
            cells = ("n/a", "n/a", "n/a", "-", "n/a") if t is None else (
                _shown(t["measured"]), _ci(t), _shown(t["ratio_of_medians"]),
                f"{t['op']} {t['limit']:g}", _verdict(t))
            lines.append(f"| {m.name} | {m.others} | {bench['modes'][m.name]['rtt_us']['median']:.2f} "
                         f"| {' | '.join(cells)} |")
    return "\n".join(lines) if len(lines) > 2 else "Not measured in this run."


def reported_table(rows: list[dict[str, Any]]) -> str:
    """Ratios shown with no target, with the same paired statistics."""
    if not rows:
        return "Not measured in this run."
    lines = ["| ratio | paired median | 95% CI of the median | ratio of medians | what it shows |",
             "|---|---:|---:|---:|---|"]
    lines += [f"| `{r['rule']}` | {_shown(r['measured'])} | {_ci(r)} "
              f"| {_shown(r['ratio_of_medians'])} | {r['why']} |" for r in rows]
    return "\n".join(lines)


def _ms(spread: Mapping[str, float] | None) -> str:
    if spread is None:
        return "n/a"
    return f"{spread['median'] / 1000:.2f} ({spread['min'] / 1000:.2f}-{spread['max'] / 1000:.2f})"


def _accepted(side: Mapping[str, Any]) -> tuple[str, str]:
    refused = sorted({r for r in side["refused"] if r})
    return ", ".join(str(a) for a in side["accepted"]), ", ".join(refused) or "-"


def _array_outcome(arr: Mapping[str, Any]) -> str:
    """What the kernel did with the 1024 ioeventfds, in words, from the data."""
    side, n = arr["ioeventfd"], arr["doorbells"]
    nofile = arr.get("nofile_soft") or {}
    fds = (f"each with its own eventfd ({n} descriptors: RLIMIT_NOFILE's soft limit was raised "
           f"from {nofile.get('before')} to {nofile.get('after')})"
           if arr["eventfds"] == n and nofile.get("before") != nofile.get("after")
           else f"on {arr['eventfds']} eventfd(s)")
    if all(a == n for a in side["accepted"]):
        return (f"KVM accepted all {n} ioeventfds, {fds}: kvm_io_bus_register_dev() leaves "
                "ioeventfds out of the bus's 1000-device limit (it compares dev_count - "
                "ioeventfd_count with NR_IOBUS_DEVS), so there was no ENOSPC.")
    refused = _accepted(side)[1]
    return (f"KVM refused ioeventfds after accepting {_accepted(side)[0]} of {n} "
            f"(per repeat), with {refused}, {fds}.")


def array_section(bench: Mapping[str, Any]) -> str:
    """The 1024-doorbell array registered as ioeventfds and as one KVM_IOFD."""
    arr = bench.get("doorbell_array")
    if arr is None:
        return "Not measured in this run."
    n, size = arr["doorbells"], arr["doorbell_bytes"]
    lines = [
        f"{n} doorbells of {size} bytes side by side at {arr['addr']:#x} on the {arr['bus']} bus "
        f"({n * size // 1024} KiB, an NVMe controller's doorbells with CAP.DSTRD = 0), "
        f"registered in a fresh VM (in-kernel irqchip) in each of {arr['repeats']} repeats; "
        "times are the registering ioctls' wall time, median (min-max) over the repeats.",
        "",
        "| registration | registrations needed | accepted (per repeat) | refused with "
        "| register ms | per registration µs | deassign ms |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for label, key in ((f"KVM_IOEVENTFD, one per {size}-byte doorbell", "ioeventfd"),
                       (f"KVM_IOFD, one {n * size // 1024} KiB range", "iofd")):
        side = arr[key]
        accepted, refused = _accepted(side)
        lines.append(f"| {label} | {side['registrations']} | {accepted} | {refused} "
                     f"| {_ms(side['register_us'])} | {side['register_us_per_registration']:.1f} "
                     f"| {_ms(side['deassign_us'])} |")
    lines += ["", _array_outcome(arr) + f" Registering the array as ioeventfds took "
              f"{arr['register_ratio']:.0f}x as long as the one KVM_IOFD."]
    return "\n".join(lines)


DEVICE_CHECKS = (
    ("userspace exits per run", "userspace exits/run"),
    ("eventfd signals per run", "eventfd signals/run"),
    ("runs whose consumed tails equal the guest's last writes",
     "final tails: runs whose signalled wakeups alone consumed the guest's last writes "
     "(before the drain)"),
    ("registrations", "registrations (proved at deassign)"),
    ("runs without problems", "runs without problems"),
)
"""The scenario's checks (payload.device.checks.variant_checks), by name, with their column titles."""


def _variant(dev: Mapping[str, Any], key: str) -> str:
    return f"({key}) {dev['variants'][key]['name']}" if key in dev["variants"] else f"({key})"


def _device_rule(dev: Mapping[str, Any], r: Mapping[str, Any]) -> str:
    """``(c) iofd-buffer / (b) shadow-ioeventfd <= 1.1``: the rule with the variants named."""
    limit = f" {r['op']} {r['limit']:g}" if "limit" in r else ""
    return f"{_variant(dev, r['a'])} / {_variant(dev, r['b'])}{limit}"


def _ns(spread: Mapping[str, float] | None) -> str:
    if spread is None:
        return "n/a"
    return f"{spread['median']:,.0f} ({spread['min']:,.0f}-{spread['max']:,.0f})"


def _count(spread: Mapping[str, float] | None) -> str:
    """A per-run count: one number when every run had it, else median (min-max)."""
    if spread is None:
        return "n/a"
    if spread["min"] == spread["max"]:
        return f"{spread['min']:.0f}"
    return f"{spread['median']:.0f} ({spread['min']:.0f}-{spread['max']:.0f})"


def _plain(value: Any) -> str:
    """A check's value: a list of one value (every run alike) as that value."""
    return str(value[0]) if isinstance(value, list) and len(value) == 1 else str(value)


def device_variants_table(dev: Mapping[str, Any]) -> str:
    """Per variant: guest-side ns per doorbell write, userspace exits, device
    wakeups and registrations."""
    lines = ["| variant | registrations (ioctl) | guest cooperation | guest-side ns per doorbell "
             "write, median (min-max) | the same less the device thread's CPU | userspace exits/run "
             "| device wakeups/run |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for key, v in dev["variants"].items():
        f = _facts(v)
        lines.append(f"| {_variant(dev, key)} | {f['registrations']} ({v['ioctl'] or 'none'}) "
                     f"| {'yes: shadow stores' if v['guest_cooperation'] else 'no'} "
                     f"| {f['ns']} | {f['less_device']} | {f['exits']} | {f['wakeups']} |")
    return "\n".join(lines)


def _facts(v: Mapping[str, Any]) -> dict[str, str]:
    """One variant's numbers as printed, for the table and the console alike."""
    s = v["summary"]
    return {"ns": _ns(s["ns_per_write"]), "less_device": _ns(s["ns_per_write_less_device"]),
            "exits": _count(s["userspace_exits"]), "wakeups": _count(s["wakeups"]),
            "registrations": str(v["path"]["registrations"])}


def device_checks_table(dev: Mapping[str, Any]) -> str:
    """One row per variant, one column per check: what was measured (with
    what it had to be when it failed; a report exists only when all passed)."""
    lines = ["| variant | " + " | ".join(title for _, title in DEVICE_CHECKS) + " | result |",
             "|---|" + "---|" * len(DEVICE_CHECKS) + "---|"]
    for key in dev["variants"]:
        mine = {c["name"]: c for c in dev["checks"] if c["variant"] == key}
        cells = ["-" if (c := mine.get(name)) is None else
                 _plain(c["value"]) + ("" if c["ok"] else f" (must be {_plain(c['expected'])})")
                 for name, _ in DEVICE_CHECKS]
        ok = all(c["ok"] for c in mine.values())
        lines.append(f"| {_variant(dev, key)} | " + " | ".join(cells)
                     + f" | {'ok' if ok else '**FAILED**'} |")
    return "\n".join(lines)


def final_tails(dev: Mapping[str, Any]) -> str:
    """The final-tail check in words, from the checks."""
    tails = [c for c in dev["checks"] if c["name"] == DEVICE_CHECKS[2][0]]
    ok = all(c["ok"] for c in tails)
    runs = ", ".join(f"({c['variant']}) {c['value']} of {c['expected']}" for c in tails)
    return (f"Final-tail check ({'passed' if ok else 'FAILED'}): after every run, warm-up included, "
            "the device thread's signalled wakeups must have consumed each of the 64 queues up to "
            "exactly the last tail the guest wrote to it, before the drain that follows the run "
            f"(which would find a tail whose signal was lost); runs that did: {runs}.")


def _less_device_table(dev: Mapping[str, Any]) -> str:
    lines = ["| ratio | paired median | 95% CI of the median | ratio of medians |", "|---|---:|---:|---:|"]
    lines += [f"| `{_device_rule(dev, r)}` | {_shown(r['measured'])} | {_ci(r)} "
              f"| {_shown(r['ratio_of_medians'])} |" for r in dev["targets_less_device"]]
    return "\n".join(lines)


def device_section(bench: Mapping[str, Any]) -> str:
    """The doorbell-bank scenario: what ran, per variant, its checks, its targets."""
    dev = bench.get("device")
    if dev is None:
        return "Not measured in this run."
    pattern = dev["pattern"]
    named = [{**r, "rule": _device_rule(dev, r)} for r in dev["targets"]]
    return "\n".join([
        f"{dev['queues']} NVMe-style submission queues, each with a {dev['doorbell_bytes']}-byte tail "
        f"doorbell in one MMIO array; per run the guest makes {dev['writes']} doorbell writes of "
        f"increasing tails in a pseudo-random queue order (seed {dev['seed']}: "
        f"{pattern['queues_written']} queues written, tails up to {pattern['max_tail']}), and a "
        "device thread woken by an eventfd consumes every queue whose tail moved.  Each variant "
        f"runs an untimed warm-up, then {dev['rounds']} rounds of one run per variant, the order "
        "in a Williams design (every row once in every place, after every other row equally "
        "often); a run's time is the native KVM_RUN loop's wall time from the "
        f"first KVM_RUN to the guest's DONE exit (the scenario took {dev['seconds']:.0f} s).  "
        "(b)'s 64 ioeventfds all signal one eventfd.",
        "", device_variants_table(dev),
        "", "### Checks (a failed one fails the run)", "", device_checks_table(dev),
        "", final_tails(dev),
        "", "### Targets", "", targets_table(named),
        "", "With the device thread's CPU time taken out of each run (with one vCPU the device "
        "ran while the guest did not), for information: no verdict.", "", _less_device_table(dev),
    ])


def _load(load: Mapping[str, Any] | None) -> str:
    if not load:
        return "not recorded"
    return (f"1-min load average {load['before']} before, {load['after']} after, on {load['cpus']} CPUs"
            + (" (loaded: other work shared the CPUs; rows are inflated and scattered)"
               if load["before"] > 0.5 * (load["cpus"] or 1) else ""))


def environment(bench: Mapping[str, Any]) -> str:
    """Where and how the numbers were taken."""
    rows = [
        ("kernel", f"{bench['kernel']} (kernel-patch series {bench['series']})"),
        ("accelerator", bench["accel"] + (f" ({reason})" if (reason := bench.get("accel_reason")) else "")),
        ("host CPU", bench["host_cpu"]),
        ("host load", _load(bench.get("host_load"))),
        ("L1 guest CPU (runs KVM)", bench.get("guest_cpu", "unknown")),
        ("emulator", bench.get("qemu", "unknown")),
        ("L2 guest", f"{bench['vcpus']} vCPU, real mode, in-kernel irqchip in every mode"),
        ("workload", f"{bench['iterations']} guest writes of {bench.get('access_size', 1)} byte "
                     "(hypercalls for hc and hc-floor) per trial, "
                     f"{bench['trials']} rounds of one trial per mode and scale row "
                     f"({len(bench['modes'])} in all), the order a Williams design over the rounds"),
        ("KVM_RUN loop", "native C (payload/native/vmexit_loop.c), one untimed warm-up run per mode"),
        ("generated", bench.get("generated", "unknown")),
    ]
    return "\n".join(f"- {k}: {v}" for k, v in rows)


NOTES = """\
- rtt = trial wall time / N: time per guest write, its share of the single
  final exit included.  iops = 1e6 / median rtt (the 2009 posting's iops
  is the reciprocal of its rtt too).  The ratio columns of the results
  table are ratios of medians.
- A target is decided on the median of its paired ratios: a/b of the two
  trials of each round, taken seconds apart, so drift over the run cancels.
  They are computed from the raw trial times and rounded only here.  The
  ratio of medians is shown beside it; when the limit lies inside the
  paired median's distribution-free 95 % confidence interval (order
  statistics; with 5 rounds or fewer the whole range, its lower coverage
  shown in brackets) the target reads "undecided".  That interval narrows
  as rounds are added, so more rounds can decide what fewer could not.
  `--strict` makes a missed target fail the run; a failed check always does.
- userspace-*: the write exits to userspace and the native loop rings the
  doorbell with an ioctl (the 2009 "qemu" path, with a lean loop instead of
  QEMU's dispatch, so it is the cheapest a userspace device model can be).
- iofd-* / ioeventfd-*: the doorbell module is attached to the eventfd and
  counts in the eventfd's wake-up, in the kernel; upstream KVM_IOEVENTFD is
  registered without datamatch on the exact address and length
  (ioeventfd-mmio-len0: length 0, any access size, the form virtio's notify
  uses and the one VMX serves from its FAST_MMIO bus).
- iofd-buffer-*: KVM_IOFD with KVM_IOFD_FLAG_BUFFER, each write also stored
  in an 8-byte user buffer before the signal.  Every write mode runs the
  same guest loop: N - 1 writes of 0x78, then one of 0xc3; the host fills
  the buffer with 0xa5 before each trial, and after it the buffer must read
  c3 then seven a5: the last write, and nothing else touched.
- kernel-pio: a write to port 0x4d0 (PIC ELCR) that the in-kernel irqchip
  emulates, no eventfd: the cheapest exit a port write can take, the floor.
- hc: the 2009 posting's iofd-hc, on upstream's in-kernel path from a
  hypercall to an eventfd: the guest, in 16-bit protected mode, makes fast
  Hyper-V SIGNAL_EVENT hypercalls (vmmcall on AMD, vmcall on Intel) for a
  connection id that KVM_HYPERV_EVENTFD binds to the doorbell's eventfd;
  the VMM offers the vCPU Hyper-V (its CPUID leaves and a guest OS id).
  hc-floor: a KVM hypercall with a number KVM does not know, on a vCPU
  without Hyper-V, which KVM answers with -KVM_ENOSYS in the kernel: the
  hypercall counterpart of kernel-pio.  Their loops load four registers
  per call where the write loops load none, so they are compared with
  kernel-pio as reported ratios, without a target; under TCG a hypercall's
  cost is mostly the emulator's.  The last status each stored must be
  HV_STATUS_SUCCESS (hc) or -KVM_ENOSYS (hc-floor) after every trial.
- Scale rows (`iofd-pio+990` ...): the same mode in a VM that also has 10,
  100 or 990 other 1-byte registrations of the same kind (iofds or
  ioeventfds, all on one eventfd of their own) on the same bus, 2 bytes
  apart, half below and half above the guest's address; on PIO they skip
  the ports below 0x100 and the ELCR.  Every VM also has the in-kernel
  PIC's 3 devices on the PIO bus and the IOAPIC on MMIO.  They run in the
  same rounds as the other modes, and each is paired per round with its
  0-registration row.  After the trials none of the others may have been
  signalled, and each must deassign.
- Checks pass or there is no report: every trial must make exactly 1
  KVM_RUN return (N + 1 for userspace-*), the doorbell must read N where
  the write rings it and 0 for kernel-pio, cpuid and hc-floor, which
  nothing rings, and the guest's own loop count (EDI, reported at the
  final exit) must be N.  After the trials each eventfd mode proves its
  path: its registration must deassign with its own ioctl (KVM_IOFD or
  KVM_IOEVENTFD) after the other ioctl failed to find it (ENOENT); hc's
  must deassign with KVM_HYPERV_EVENTFD.  The doorbell array's KVM_IOFD
  must be accepted.
- Under TCG the cost of an exit is mostly the emulator's world switch
  (nested SVM emulated in software), so absolute times are tens of times
  those of hardware virtualization; compare rows as ratios, taken in the
  same run with the modes interleaved."""


def markdown(bench: Mapping[str, Any]) -> str:
    """bench.md: environment, results, targets, the 2009 comparison, notes."""
    return "\n\n".join([
        "# KVM_IOFD doorbell round trip",
        "## Environment\n\n" + environment(bench),
        "## Results\n\n" + results_table(bench),
        "## Checks\n\n" + checks_table(bench.get("checks", [])),
        "## Targets\n\n" + targets_table(bench["targets"]),
        "## Instructions per doorbell (icount)\n\n" + instructions_table(bench),
        "## Against the 2009 posting\n\n" + seed_table(bench),
        "## Registrations on the bus (scale)\n\n" + scale_table(bench),
        "## Hypercalls (reported, no target)\n\n" + reported_table(bench.get("reported", [])),
        "## 1024 doorbells: an NVMe-style array\n\n" + array_section(bench),
        "## Doorbell bank: 64 queues served three ways (device scenario)\n\n"
        + device_section(bench),
        "## Notes\n\n" + NOTES,
    ]) + "\n"


def terminal(bench: Mapping[str, Any]) -> str:
    """A short summary for the console, in the 2009 posting's style."""
    lines = []
    for name in (m for m in modes.NAMES if m in bench["modes"]):
        rec = bench["modes"][name]
        rtt = rec["rtt_us"]
        lines.append(f"{name:>19}: {rec['iops']:>7} iops, {rtt['median']:7.2f}us rtt "
                     f"({rtt['min']:.2f}-{rtt['max']:.2f}), "
                     f"{rec['userspace_exits_per_trial']} exits/trial")
    for m in (m for m in modes.SCALE_MODES if m.name in bench["modes"]):
        t = _target_for(bench, m.name)
        lines.append(f"{m.name:>19}: {bench['modes'][m.name]['rtt_us']['median']:7.2f}us rtt, "
                     f"paired {_shown(t and t['measured'])} x {m.base}")
    counted = bench.get("icount")
    if counted is not None:
        lines += ["", f"instructions per doorbell under icount ({counted['trials']} rounds; "
                      "a path length: see bench.md):"]
        lines += [f"{name:>19}: {rec['per_doorbell']['median']:9.1f}"
                  for name, rec in counted["modes"].items()]
    lines += ["", "checks (a failed one fails the run):"]
    lines += terminal_checks(bench.get("checks", []))
    decided_on = ("instructions under icount, wall-clock beside it" if counted is not None
                  else "wall-clock, ratio of medians beside it")
    lines += ["", f"targets (median of the per-round paired ratios [95% CI]; decided on "
                  f"{decided_on}):"]
    lines += [_target_line(r) for r in bench["targets"]]
    lines.append("  " + targets_summary(bench["targets"]))
    if bench.get("reported"):
        lines += ["", "reported, no target (paired median [95% CI]):"]
        lines += [f"  {r['rule']:<44} paired {_shown(r['measured'])} [{_ci(r)}]"
                  for r in bench["reported"]]
    arr = bench.get("doorbell_array")
    if arr is not None:
        lines += ["", "1024-doorbell array (register ms, median over repeats):"]
        for key in ("ioeventfd", "iofd"):
            side = arr[key]
            accepted, refused = _accepted(side)
            lines.append(f"  {key:>9}: {side['registrations']} registrations, accepted {accepted}, "
                         f"refused {refused}, {_ms(side['register_us'])} ms")
    lines += terminal_device(bench.get("device"))
    return "\n".join(lines)


def terminal_device(dev: Mapping[str, Any] | None) -> list[str]:
    """The doorbell-bank scenario's lines for the console (none if it did not run)."""
    if dev is None:
        return []
    lines = ["", f"doorbell bank, device scenario ({dev['writes']} writes x {dev['rounds']} rounds; "
                 "guest-side ns per doorbell write, median (min-max)):"]
    for key, v in dev["variants"].items():
        f = _facts(v)
        lines.append(f"  {_variant(dev, key):>20}: {f['ns']} ns/write, {f['exits']} userspace "
                     f"exits/run, {f['wakeups']} device wakeups/run, {f['registrations']} registrations")
    failed = [c for c in dev["checks"] if not c["ok"]]
    lines.append(f"  checks: {len(dev['checks']) - len(failed)} of {len(dev['checks'])} ok")
    lines.append("  " + final_tails(dev))
    named = [{**r, "rule": _device_rule(dev, r)} for r in dev["targets"]]
    return [*lines, *(_target_line(r) for r in named), "  " + targets_summary(named)]


def _target_line(r: Mapping[str, Any]) -> str:
    """One target on the console: verdict, rule, paired median [CI], ratio of medians."""
    word = {"pass": "pass", "miss": "MISS", "straddle": "UNDECIDED"}.get(r["verdict"], "n/a")
    wall = r.get("wall")
    beside = ("" if wall is None else
              f"  wall-clock {_shown(wall['measured'])} [{_ci(wall)}]")
    return (f"  {word:>9}  {r['rule']:<44} paired {_shown(r['measured'])} [{_ci(r)}]  "
            + (f"of medians {_shown(r.get('ratio_of_medians'))}" if wall is None else
               f"(instructions){beside}")
            + ("  (the limit is inside the CI)" if r["verdict"] == "straddle" else ""))


def terminal_checks(rows: list[dict[str, Any]]) -> list[str]:
    """One line per mode: ok/FAILED, then each check's measured value."""
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_mode.setdefault(r["mode"], []).append(r)
    out = []
    for name, mine in by_mode.items():
        state = "ok" if all(r["ok"] for r in mine) else "FAILED"
        shown = "; ".join(f"{r['check']} {r['measured']}" + ("" if r["ok"] else f" (want {r['expected']})")
                          for r in mine)
        out.append(f"  {state:>6}  {name:<20} {shown}")
    return out


def build(raw: Mapping[str, Any], env: Mapping[str, Any]) -> dict[str, Any]:
    """The bench record of a run that passed its verdict (:func:`payload.vmexit.checks.verify`),
    with its targets evaluated: on the icount run's instructions when ``raw``
    has one (``raw["icount"]``, judged by the same checks), else on wall-clock."""
    bench = summary.summarize(raw, env)
    bench["targets"] = targets.evaluate(bench)
    bench["reported"] = targets.evaluate_reported(bench)
    counted = raw.get("icount")
    icount.decide(bench, None if counted is None else icount.summarize(counted, env))
    return bench


def write(bench: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write bench.json, bench.md and bench.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md, png = (out_dir / name for name in OUTPUTS)
    js.write_text(json.dumps(bench, indent=1) + "\n")
    md.write_text(markdown(bench))
    from harness.bench import chart  # matplotlib: only where a chart is drawn

    chart.draw(bench, png, SEED)
    return [js, md, png]


def render(raw: Mapping[str, Any], env: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Judge, summarise and write every output; the bench record back."""
    bench = build(raw, env)
    write(bench, out_dir)
    return bench
