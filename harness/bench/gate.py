"""The instruction-count regression gate: no mode may cost more than its record.

Why: instructions per doorbell under icount (:mod:`harness.bench.icount`)
repeat to 0.1 %, so a change to the series, the VMM loop or the guest
programs that lengthens a path by half a percent is visible, where a
wall-clock figure would hide it in 14-26 % of noise.  ``make test`` measures
every mode once more under icount and fails when one costs more than
:data:`TOLERANCE` above :data:`RECORD`.

The record holds what it was measured with.  The count depends on the
code that runs: the kernel's base, flavour and compiler, the QEMU that counts, the
guest's CPU model.  A run where one of those differs is not compared (the
test says so and skips); the series, the payload and the guest programs
are what the gate is for, so a change there is compared.

``python -m harness bench --record-icount`` (``make bench-record``)
measures again and rewrites the record, printing every mode's change and
what differed in the environment, with the reason given on its command
line: a record never changes silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import paths

RECORD = paths.REPO / "harness" / "bench" / "icount-record.json"
TOLERANCE = 0.005
"""A mode fails the gate above record x (1 + TOLERANCE)."""
ITERATIONS, TRIALS = 2000, 2
"""The gate's workload: a few seconds of VM time for every mode."""

COMPARED_ENV = ("base", "flavour", "compiler", "qemu", "guest_cpu")
"""Environment keys that must match the record's for the figures to be
comparable (a debug kernel runs other code); anything else (the series
id, the kernel release) may differ."""


@dataclass(frozen=True)
class Comparison:
    """The gate's verdict on one measurement against the record."""

    incomparable: list[str]
    """Why the figures cannot be compared (empty when they can)."""
    worse: list[str]
    """Modes over the tolerance, each with its figures."""
    better: list[str]
    """Modes more than the tolerance under their record (not failures)."""
    compared: int
    largest: float = 0.0
    """The largest relative change of any compared mode, either way."""


def environment(kernel_release: str, proc_version: str, qemu: str, guest_cpu: str,
                series: str, flavour: str) -> dict[str, str]:
    """What a count depends on: ``base`` is the release without its local
    version, ``compiler`` the part of /proc/version that names it."""
    # "Linux version R (user@host) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld ...) #1 ..."
    _, found, rest = proc_version.partition(") (")
    compiler = rest.split(", ", 1)[0] if found else "unknown"
    return {"kernel": kernel_release, "base": kernel_release.split("-", 1)[0],
            "flavour": flavour, "compiler": compiler, "qemu": qemu, "guest_cpu": guest_cpu, "series": series}


def per_doorbell(counted: dict[str, Any]) -> dict[str, float]:
    """mode -> median instructions per doorbell, from :func:`icount.summarize`'s record."""
    return {name: rec["per_doorbell"]["median"] for name, rec in counted["modes"].items()}


def load(path: Path = RECORD) -> dict[str, Any] | None:
    """The record, or None when there is none yet."""
    if not path.exists():
        return None
    return json.loads(path.read_text())


def compare(record: dict[str, Any], env: dict[str, str], measured: dict[str, float],
            tolerance: float = TOLERANCE) -> Comparison:
    """Each recorded mode's figure against ``measured``; a recorded mode
    that was not measured is a failure too (it cannot have got cheaper by
    disappearing)."""
    rec_env = record["environment"]
    incomparable = [f"{k}: recorded with {rec_env.get(k)!r}, this run has {env.get(k)!r}"
                    for k in COMPARED_ENV if rec_env.get(k) != env.get(k)]
    if incomparable:
        return Comparison(incomparable, [], [], 0)
    worse, better = [], []
    largest = 0.0
    for name, was in record["per_doorbell"].items():
        now = measured.get(name)
        if now is None:
            worse.append(f"{name}: recorded at {was:.1f}, not measured in this run")
            continue
        change = now / was - 1
        largest = max(largest, abs(change))
        line = f"{name}: {was:.1f} -> {now:.1f} instructions per doorbell ({change:+.2%})"
        if change > tolerance:
            worse.append(line)
        elif change < -tolerance:
            better.append(line)
    return Comparison([], worse, better, len(record["per_doorbell"]), largest)


def changes(old: dict[str, Any] | None, env: dict[str, str],
            measured: dict[str, float]) -> list[str]:
    """What a new record changes against ``old``, line by line: the
    environment first, then every mode that moved."""
    if old is None:
        return ["no record before: every figure is new"]
    lines = [f"{k}: {old['environment'].get(k)!r} -> {v!r}"
             for k, v in env.items() if old["environment"].get(k) != v]
    for name in sorted(set(old["per_doorbell"]) | set(measured)):
        was, now = old["per_doorbell"].get(name), measured.get(name)
        if was is None or now is None:
            lines.append(f"{name}: {'added' if was is None else 'dropped'}")
        elif abs(now / was - 1) > 1e-4:
            lines.append(f"{name}: {was:.1f} -> {now:.1f} ({now / was - 1:+.2%})")
    return lines or ["nothing changed"]


def write(env: dict[str, str], measured: dict[str, float], why: str, iterations: int,
          trials: int, path: Path = RECORD) -> None:
    path.write_text(json.dumps({
        "why": why,
        "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": env,
        "iterations": iterations,
        "trials": trials,
        "tolerance": TOLERANCE,
        "per_doorbell": {k: round(v, 2) for k, v in sorted(measured.items())},
    }, indent=1) + "\n")
