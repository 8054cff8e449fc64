"""Raw trials -> the ``results/bench.json`` record (schema 1).

Schema 1 is a promise to whoever reads the file (the cover letter, later
runs to compare against), so its keys are fixed::

    {"schema": 1, "kernel", "series", "accel", "host_cpu", "vcpus",
     "iterations", "trials",
     "modes": {mode: {"rtt_us": {"median", "min", "max"}, "iops",
                      "doorbell_exact", "userspace_exits_per_trial"}}}

Everything else (``trials_us``, ``targets``, environment extras) is an
added key; readers of schema 1 may ignore it.

Definitions: rtt = trial wall time / N, the time per guest write including
its share of the one final exit; ``iops`` = 1e6 / median rtt, as in the
2009 posting where iops is the reciprocal of rtt.  ``doorbell_exact`` is
computed from the data: every trial's doorbell count equalled what the mode
must produce (N where the write rings it, 0 for ``kernel-pio`` and
``cpuid``, which no write rings).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from payload.bench import checks, modes

SCHEMA = 1
ENV_KEYS = ("series", "accel", "host_cpu")
"""What only the host knows and :func:`summarize` must be given."""


def _us(x: float) -> float:
    return round(x, 3)


def mode_stats(raw: Mapping[str, Any], name: str) -> tuple[dict[str, Any], list[float]]:
    """(the schema's per-mode record, rtt of each trial in µs in run order)."""
    n = raw["iterations"]
    mode = modes.get(name)
    runs = [t for t in raw["runs"] if t["mode"] == name]
    us = [t["ns"] / n / 1000.0 for t in runs]
    median = statistics.median(us)
    exits = {t["kvm_runs"] for t in runs}
    if len(exits) != 1:  # check_raw makes this impossible; never average it away
        raise checks.CountMismatch([f"{name}: userspace exits differ between trials: {sorted(exits)}"])
    record = {
        "rtt_us": {"median": _us(median), "min": _us(min(us)), "max": _us(max(us))},
        "iops": round(1e6 / median),
        "doorbell_exact": all(t["doorbell"] == mode.expected_doorbell(n) for t in runs),
        "userspace_exits_per_trial": exits.pop(),
    }
    return record, [_us(x) for x in us]


def summarize(raw: Mapping[str, Any], env: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``raw`` (raising :class:`checks.CountMismatch`) and reduce it.

    ``env`` must hold :data:`ENV_KEYS`; any other key in it is added at the
    top level as an environment extra (e.g. ``qemu``).
    """
    missing = [k for k in ENV_KEYS if k not in env]
    if missing:
        raise ValueError(f"summarize needs {', '.join(missing)} from the host")
    checks.check_raw(raw)
    per_mode: dict[str, Any] = {}
    trials_us: dict[str, list[float]] = {}
    for name in raw["modes"]:
        per_mode[name], trials_us[name] = mode_stats(raw, name)
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
        "trials_us": trials_us,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    return bench


def ratio(bench: Mapping[str, Any], a: str, b: str) -> float | None:
    """median rtt of ``a`` / median rtt of ``b``; None if either is absent."""
    m = bench["modes"]
    if a not in m or b not in m:
        return None
    return m[a]["rtt_us"]["median"] / m[b]["rtt_us"]["median"]
