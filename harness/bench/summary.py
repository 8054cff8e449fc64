"""Raw trials -> the ``results/bench.json`` record (schema 1).

Schema 1 is a promise to whoever reads the file (the cover letter, later
runs to compare against), so its keys are fixed::

    {"schema": 1, "kernel", "series", "accel", "host_cpu", "vcpus",
     "iterations", "trials",
     "modes": {mode: {"rtt_us": {"median", "min", "max"}, "iops",
                      "doorbell_exact", "userspace_exits_per_trial"}}}

Everything else is an added key; readers of schema 1 may ignore it:
``trials_ns`` (each mode's raw trial times, index = round, which is what
the targets pair), ``trials_us`` (the same in µs, rounded), ``rounds``
(each round's run order), ``paths`` (the eventfd modes' path proofs),
``checks`` (every check with what it measured), ``targets``,
``reported`` (ratios shown without a target), ``doorbell_array`` (the
1024-doorbell array, see :func:`doorbell_array`), ``device`` (the
doorbell-bank scenario, see :func:`device`) and the environment extras.
The modes added since the first schema 1 files
(``iofd-buffer-*``, ``ioeventfd-mmio-len0``, ``hc``, ``hc-floor``) and the
scale rows (``iofd-pio+990`` ...) are more entries under ``modes``, with
the same keys.

Definitions: rtt = trial wall time / N, the time per guest write including
its share of the one final exit; ``iops`` = 1e6 / median rtt, as in the
2009 posting where iops is the reciprocal of rtt.  ``doorbell_exact`` is
the verdict's doorbell check (:func:`payload.vmexit.checks.verify`): every
trial's doorbell count equalled what the mode must produce (N where the
write rings it, 0 for ``kernel-pio`` and ``cpuid``, which no write rings).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from harness.bench import targets
from payload.device import checks as device_checks
from payload.vmexit import checks, modes

SCHEMA = 1
ENV_KEYS = ("series", "accel", "host_cpu")
"""What only the host knows and :func:`summarize` must be given."""


def _us(x: float) -> float:
    return round(x, 3)


def mode_stats(raw: Mapping[str, Any], name: str,
               doorbell_exact: bool) -> tuple[dict[str, Any], list[int]]:
    """(the schema's per-mode record, raw ns of each trial in round order);
    ``doorbell_exact`` is the verdict's on the mode's doorbell check."""
    n = raw["iterations"]
    runs = sorted((t for t in raw["runs"] if t["mode"] == name), key=lambda t: t["trial"])
    us = [t["ns"] / n / 1000.0 for t in runs]
    median = statistics.median(us)
    exits = {t["kvm_runs"] for t in runs}
    if len(exits) != 1:  # verify() lets no such record through; never average it away
        raise ValueError(f"{name}: userspace exits differ between trials: {sorted(exits)}")
    record = {
        "rtt_us": {"median": _us(median), "min": _us(min(us)), "max": _us(max(us))},
        "iops": round(1e6 / median),
        "doorbell_exact": doorbell_exact,
        "userspace_exits_per_trial": exits.pop(),
    }
    return record, [t["ns"] for t in runs]


def _spread_us(ns: list[int | None]) -> dict[str, float] | None:
    values = [v / 1000.0 for v in ns if isinstance(v, int)]
    if not values:
        return None
    return {"median": _us(statistics.median(values)), "min": _us(min(values)),
            "max": _us(max(values))}


def _array_side(repeats: list[Mapping[str, Any]], side: str, registrations: int) -> dict[str, Any]:
    recs = [r[side] for r in repeats]
    register = [r.get("register_ns") for r in recs]
    median_ns = statistics.median(v for v in register if isinstance(v, int))
    return {
        "registrations": registrations,
        "accepted": [r.get("accepted") for r in recs],
        "refused": [r.get("refused") for r in recs],
        "register_us": _spread_us(register),
        "register_us_per_registration": _us(median_ns / registrations / 1000.0),
        "deassign_us": _spread_us([r.get("deassign_ns") for r in recs]),
        "_register_median_ns": median_ns,
    }


def doorbell_array(array: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The 1024-doorbell array's summary: per side the registrations it
    needs, what the kernel accepted (and refused, with which errno) in each
    repeat, register and deassign times in µs (median, min, max over the
    repeats), and ``register_ratio``, the median times' ratio
    ioeventfd / iofd.  None when the run did not measure it."""
    if array is None:
        return None
    repeats = array["repeats"]
    ioeventfd = _array_side(repeats, "ioeventfd", array["doorbells"])
    iofd = _array_side(repeats, "iofd", 1)
    ratio_ = ioeventfd.pop("_register_median_ns") / iofd.pop("_register_median_ns")
    return {
        "doorbells": array["doorbells"], "doorbell_bytes": array["doorbell_bytes"],
        "addr": array["addr"], "bus": array["bus"], "eventfds": array["eventfds"],
        "nofile_soft": array.get("nofile_soft"), "repeats": len(repeats),
        "ioeventfd": ioeventfd, "iofd": iofd, "register_ratio": ratio_,
    }


DEVICE_KEYS = ("scenario", "schema", "kernel", "writes", "rounds", "seed", "queues",
               "doorbell_bytes", "pattern", "b_eventfds", "order", "seconds")
"""What :func:`device` copies from the scenario's output as it is."""


def device(dev: Mapping[str, Any] | None, found: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The doorbell-bank scenario's record (None when it did not run), from
    an output that passed :func:`payload.vmexit.checks.verify`, whose checks
    table is ``found``.

    Keys: :data:`DEVICE_KEYS` as the scenario wrote them; ``variants``
    (per key: name, what, registrations, ioctl, guest_cooperation, the
    scenario's ``summary`` spreads, ``ns_per_write`` per timed run in round
    order, and the ``path`` proof); ``checks`` (``found``); ``targets`` and
    ``targets_less_device`` (:func:`harness.bench.targets.evaluate_device`,
    from the runs' raw ns).
    """
    if dev is None:
        return None
    variants = {
        key: {**{k: entry[k] for k in ("name", "what", "registrations", "ioctl",
                                         "guest_cooperation", "summary", "path")},
              "ns_per_write": [run["ns_per_write"] for run in entry["runs"]]}
        for key, entry in dev["variants"].items()}
    return {**{k: dev[k] for k in DEVICE_KEYS}, "variants": variants, "checks": found,
            "targets": targets.evaluate_device(dev["variants"]),
            "targets_less_device": targets.evaluate_device(dev["variants"], less_device=True)}


def _readable(raw: Mapping[str, Any]) -> None:
    """Refuse a scenario output of another schema than the checks read
    (ValueError: not a failed check, an output this harness cannot read)."""
    dev = raw.get("device")
    if dev is not None and dev.get("schema") != device_checks.SCHEMA:
        raise ValueError(f"the device scenario's output has schema {dev.get('schema')!r}, "
                         f"this harness reads {device_checks.SCHEMA}")


def summarize(raw: Mapping[str, Any], env: Mapping[str, Any]) -> dict[str, Any]:
    """Judge ``raw`` (:func:`payload.vmexit.checks.verify`, the run's one
    verdict: a failed check raises :class:`checks.CountMismatch` with its
    problems) and reduce it.

    ``env`` must hold :data:`ENV_KEYS`; any other key in it is added at the
    top level as an environment extra (e.g. ``qemu``).
    """
    missing = [k for k in ENV_KEYS if k not in env]
    if missing:
        raise ValueError(f"summarize needs {', '.join(missing)} from the host")
    _readable(raw)
    verdict = checks.verify(raw)
    if verdict.problems:
        raise checks.CountMismatch(verdict.problems)
    per_mode: dict[str, Any] = {}
    trials_ns: dict[str, list[int]] = {}
    doorbell_ok = {r["mode"]: r["ok"] for r in verdict.rows if r["check"] == "doorbell"}
    for name in raw["modes"]:
        per_mode[name], trials_ns[name] = mode_stats(raw, name, doorbell_ok[name])
    n = raw["iterations"]
    bench: dict[str, Any] = {
        "schema": SCHEMA,
        "kernel": raw["kernel"],
        "series": env["series"],
        "accel": env["accel"],
        "host_cpu": env["host_cpu"],
        "vcpus": raw["vcpus"],
        "iterations": raw["iterations"],
        "trials": raw["trials"],
        "modes": per_mode,
    }
    bench.update({k: v for k, v in env.items() if k not in bench})
    bench.update({
        "guest_cpu": raw.get("guest_cpu", "unknown"),
        "access_size": raw.get("access_size", modes.ACCESS_SIZE),
        "doorbell_expected": {name: modes.get(name).expected_doorbell(raw["iterations"])
                              for name in raw["modes"]},
        "trials_ns": trials_ns,
        "trials_us": {name: [_us(ns / n / 1000.0) for ns in v] for name, v in trials_ns.items()},
        "rounds": raw.get("rounds", []),
        "paths": raw.get("paths", {}),
        "checks": verdict.rows,
        "doorbell_array": doorbell_array(raw.get("array")),
        "device": device(raw.get("device"), verdict.device),
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    return bench


def ratio(bench: Mapping[str, Any], a: str, b: str) -> float | None:
    """median rtt of ``a`` / median rtt of ``b``; None if either is absent.

    From the raw trial times where the record has them (the rounded rtt
    medians otherwise, for records written before ``trials_ns``).
    """
    m = bench["modes"]
    if a not in m or b not in m:
        return None
    raw = bench.get("trials_ns", {})
    if a in raw and b in raw:
        return statistics.median(raw[a]) / statistics.median(raw[b])
    return m[a]["rtt_us"]["median"] / m[b]["rtt_us"]["median"]
