"""The exactness rules every trial must pass, in one place.

The runner applies them as it measures (and exits non-zero on a breach);
the host applies them again to the raw file before it writes a single
number, so a report can only exist for data that passed.  A timing from a
trial whose counts are off would describe some other path than the one
its row names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payload.bench import modes
from payload.errors import ActionableError


class CountMismatch(ActionableError):
    """A trial's exit or doorbell count is not what its mode must produce."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{len(problems)} count check(s) failed:\n  {shown}{more}",
            "the numbers would not measure the path their mode names; nothing was reported",
        )


def trial_problems(trial: Mapping[str, Any], n: int) -> list[str]:
    """Everything wrong with one trial of ``n`` writes; empty when exact."""
    mode = modes.get(trial["mode"])
    where = f"{mode.name} trial {trial['trial']}"
    want = {
        "kvm_runs": mode.expected_kvm_runs(n),
        "interrupted": 0,
        "rings": mode.expected_rings(n),
        "doorbell": mode.expected_doorbell(n),
        "eventfd_left": 0,
        "end": "done",
    }
    out = []
    for key, expected in want.items():
        got = trial.get(key)
        if got != expected:
            out.append(f"{where}: {key} = {got!r}, must be {expected!r}")
    device = trial.get("io_exits", 0) + trial.get("mmio_exits", 0)
    if device != mode.expected_rings(n):
        out.append(f"{where}: {device} device exits reached userspace, must be {mode.expected_rings(n)}")
    if not isinstance(trial.get("ns"), int) or trial["ns"] <= 0:
        out.append(f"{where}: ns = {trial.get('ns')!r}, must be a positive integer")
    return out


def raw_problems(raw: Mapping[str, Any]) -> list[str]:
    """Every trial checked, plus the shape: each mode has exactly ``trials`` trials."""
    n, t = raw["iterations"], raw["trials"]
    out: list[str] = []
    if not isinstance(n, int) or n < 1:
        out.append(f"iterations = {n!r}, must be a positive integer")
        return out
    seen: dict[str, int] = {}
    for trial in raw["runs"]:
        seen[trial["mode"]] = seen.get(trial["mode"], 0) + 1
        out.extend(trial_problems(trial, n))
    for name in raw["modes"]:
        if seen.get(name, 0) != t:
            out.append(f"{name}: {seen.get(name, 0)} trials recorded, must be {t}")
    return out


def check_raw(raw: Mapping[str, Any]) -> None:
    """Raise :class:`CountMismatch` listing every breach, or return quietly."""
    problems = raw_problems(raw)
    if problems:
        raise CountMismatch(problems)
