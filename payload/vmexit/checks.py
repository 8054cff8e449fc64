"""The exactness rules every trial and every mode must pass, and the one
verdict on a bench run: :func:`verify`.

The runners only measure and write their raw files; the host hands what
they wrote (the modes' raw record, with the doorbell-bank scenario's
output under ``device``) to :func:`verify` once, before it writes a single
number (:func:`harness.bench.summary.summarize`), so a report can only
exist for data that passed, and every rule is applied once per run.  A
timing from a trial whose counts are off would describe some other path
than the one its row names.  (The one exception is each mode's warm-up,
which only the runner sees: it checks it with :func:`trial_problems` to
decide whether the trials are worth their time, and :func:`verify` reports
what it recorded.)

These are *checks*, not targets: a failed check fails the run, whatever
``--strict`` says.  Per mode they are

* ``exits``: KVM_RUN returns per trial (1, or N + 1 where every write exits),
  with the device exits, ring ioctls, signals and the DONE ending that go
  with them;
* ``doorbell``: what the doorbell counted (N, or 0 where nothing rings it),
  with no signal left unconsumed in the eventfd;
* ``iterations``: the loop count the guest itself reports at DONE is N;
* ``status`` (hypercall modes): the last hypercall's status is the one its
  path answers (HV_STATUS_SUCCESS for hc, -KVM_ENOSYS for hc-floor);
* ``buffer`` (buffer modes): the buffer holds the trial's last write;
* ``path`` (eventfd modes): after the trials the registration deassigns with
  its own ioctl and is unknown to the other one; a scale row's other
  registrations were never signalled and every one of them deassigns too.

The doorbell array (:mod:`payload.vmexit.doorbells`) has its own check,
``array``: KVM_IOFD must take the array's range in every repeat, and the
ioeventfds' outcome must be whole (all accepted, or a refusal with its
errno where the accepted ones end).  The doorbell-bank scenario's checks
are :mod:`payload.device.checks`; :func:`verify` makes them too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from payload.device import checks as device_checks
from payload.errors import ActionableError
from payload.vmexit import modes
from payload.vmexit.modes import Mode

CHECK_NAMES = ("exits", "doorbell", "iterations", "status", "buffer", "path", "array")

Finding = tuple[str, str]
"""(check name, what is wrong)."""


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


def _trial_findings(trial: Mapping[str, Any], n: int) -> list[Finding]:
    """Everything wrong with one trial of ``n`` writes, by check."""
    mode = modes.get(trial["mode"])
    where = f"{mode.name} trial {trial['trial']}"
    want: dict[str, tuple[str, object]] = {
        "kvm_runs": ("exits", mode.expected_kvm_runs(n)),
        "interrupted": ("exits", 0),
        "rings": ("exits", mode.expected_rings(n)),
        "end": ("exits", "done"),
        "doorbell": ("doorbell", mode.expected_doorbell(n)),
        "eventfd_left": ("doorbell", 0),
    }
    out: list[Finding] = []
    for key, (check, expected) in want.items():
        got = trial.get(key)
        if got != expected:
            out.append((check, f"{where}: {key} = {got!r}, must be {expected!r}"))
    device = trial.get("io_exits", 0) + trial.get("mmio_exits", 0)
    if device != mode.expected_rings(n):
        out.append(("exits", f"{where}: {device} device exits reached userspace, "
                             f"must be {mode.expected_rings(n)}"))
    if not isinstance(trial.get("ns"), int) or trial["ns"] <= 0:
        out.append(("exits", f"{where}: ns = {trial.get('ns')!r}, must be a positive integer"))
    done = trial.get("done_value")
    counted = mode.guest_count(done) if isinstance(done, int) else None
    if counted != n:
        out.append(("iterations", f"{where}: the guest counted {counted!r} iterations, must be {n}"))
    if trial.get("status") != mode.expected_status:
        out.append(("status", f"{where}: status = {_hex(trial.get('status'))}, "
                              f"must be {_hex(mode.expected_status)}"))
    want_buffer = mode.final_buffer
    got_buffer = trial.get("buffer")
    if (want_buffer is None) != (got_buffer is None) or (
            want_buffer is not None and got_buffer != want_buffer.hex()):
        out.append(("buffer", f"{where}: buffer = {got_buffer!r}, must be "
                              f"{None if want_buffer is None else want_buffer.hex()!r}"))
    return out


def _hex(value: object) -> str:
    """A status word as ``0xfffffc18``; anything else (None, a string) as its repr."""
    return f"{value:#010x}" if isinstance(value, int) else repr(value)


def trial_problems(trial: Mapping[str, Any], n: int) -> list[str]:
    """Everything wrong with one trial of ``n`` writes; empty when exact."""
    return [text for _, text in _trial_findings(trial, n)]


def expected_path(mode: Mode) -> dict[str, Any] | None:
    """What :meth:`payload.vmexit.rig.Rig.prove_path` must report for ``mode``.

    The other ioctl must not know the registration (ENOENT) where there is
    one (not for a Hyper-V connection, which no address names); a scale
    row's neighbours were never signalled and each deassigns with the
    mode's own ioctl.
    """
    if mode.registration is None:
        return None
    want: dict[str, Any] = {"registered_with": mode.registration}
    if mode.other_registration is not None:
        want.update(other=mode.other_registration, other_deassign="ENOENT")
    want["own_deassign"] = "ok"
    if mode.others:
        want.update(others_signalled=0, others_deassigned=mode.others)
    return want


def path_problems(mode: Mode, proof: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with one mode's path proof; empty when it proves the mode's path."""
    want = expected_path(mode)
    if want is None:
        return [] if proof is None else [f"{mode.name}: a path proof for a mode with no registration"]
    if proof is None:
        return [f"{mode.name}: no path proof recorded"]
    return [f"{mode.name} path: {key} = {proof.get(key)!r}, must be {value!r}"
            for key, value in want.items() if proof.get(key) != value]


def array_problems(array: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with the doorbell array's record; empty when whole
    (None: not measured, nothing to check)."""
    if array is None:
        return []
    out: list[str] = []
    count = array.get("doorbells")
    repeats = array.get("repeats") or []
    if not repeats:
        out.append("array: no repeat recorded")
    for i, rep in enumerate(repeats):
        where = f"array repeat {i}"
        iofd, ioeventfd = rep.get("iofd", {}), rep.get("ioeventfd", {})
        if iofd.get("accepted") != 1:
            out.append(f"{where}: KVM_IOFD over the array refused with {iofd.get('refused')!r}, "
                       "must be accepted")
        accepted, refused = ioeventfd.get("accepted"), ioeventfd.get("refused")
        whole = (accepted == count and refused is None) or (
            isinstance(accepted, int) and 0 <= accepted < (count or 0) and isinstance(refused, str))
        if not whole:
            out.append(f"{where}: {accepted!r} of {count!r} ioeventfds accepted, refused with "
                       f"{refused!r}: must be all accepted, or fewer and an errno")
        for side, rec in (("ioeventfd", ioeventfd), ("iofd", iofd)):
            ns = rec.get("register_ns")
            if not isinstance(ns, int) or ns <= 0:
                out.append(f"{where}: {side} register_ns = {ns!r}, must be a positive integer")
    return out


def _tally(values: Iterable[object]) -> str:
    """``"5000"`` when every trial agrees, ``"5000 x14, 4999 x1"`` otherwise."""
    counts = Counter(str(v) for v in values)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{v} x{c}" for v, c in counts.most_common())


def _path_text(proof: Mapping[str, Any]) -> str:
    """``KVM_IOFD ok, KVM_IOEVENTFD ENOENT`` (own ioctl, then the other's),
    plus ``; 990 others deassigned, 0 signals`` for a scale row."""
    text = f"{proof.get('registered_with')} {proof.get('own_deassign')}"
    if "other" in proof:
        text += f", {proof.get('other')} {proof.get('other_deassign')}"
    if "others_deassigned" in proof:
        text += (f"; {proof.get('others_deassigned')} others deassigned, "
                 f"{proof.get('others_signalled')} signals")
    return text


def _mode_rows(raw: Mapping[str, Any], name: str, failed: set[str]) -> list[dict[str, Any]]:
    """The checks table's rows for one mode: check, expected, measured, ok
    (False for the checks in ``failed``, and for every check of a mode with
    no trial)."""
    n = raw["iterations"]
    mode = modes.get(name)
    runs = [t for t in raw["runs"] if t["mode"] == name]
    rows = [
        ("exits", "userspace exits/trial", mode.expected_kvm_runs(n),
         _tally(t.get("kvm_runs") for t in runs)),
        ("doorbell", "doorbell count/trial", mode.expected_doorbell(n),
         _tally(t.get("doorbell") for t in runs)),
        ("iterations", "iterations the guest counted", n,
         _tally(mode.guest_count(t["done_value"]) if isinstance(t.get("done_value"), int)
                else None for t in runs)),
    ]
    if mode.expected_status is not None:
        rows.append(("status", "last hypercall status", _hex(mode.expected_status),
                     _tally(_hex(t.get("status")) for t in runs)))
    if mode.final_buffer is not None:
        rows.append(("buffer", "buffer after each trial (hex)", mode.final_buffer.hex(),
                     _tally(t.get("buffer") for t in runs)))
    want_path = expected_path(mode)
    if want_path is not None:
        proof = raw.get("paths", {}).get(name)
        rows.append(("path", "deassign after the trials", _path_text(want_path),
                     "not recorded" if proof is None else _path_text(proof)))
    return [{"mode": name, "check": check, "what": what, "expected": str(expected),
             "measured": measured, "trials": len(runs), "ok": check not in failed and bool(runs)}
            for check, what, expected, measured in rows]


@dataclass(frozen=True)
class Verdict:
    """Every check of one bench run, each made once, by :func:`verify`."""

    problems: list[str]
    """Every breach, in words (what :class:`CountMismatch` lists); empty
    when the run passed."""
    rows: list[dict[str, Any]]
    """The modes' checks table, in the order the raw record lists the modes."""
    device: list[dict[str, Any]]
    """The doorbell-bank scenario's checks table
    (:func:`payload.device.checks.variant_checks`); empty when it did not run."""


def verify(raw: Mapping[str, Any]) -> Verdict:
    """The verdict on a whole bench run: every trial, each mode's shape
    (exactly ``trials`` trials, one per round) and path proof, what the
    runner recorded of the warm-ups, the doorbell array, and (when ``raw``
    has it under ``device``) the doorbell-bank scenario's output."""
    n, t = raw["iterations"], raw["trials"]
    if not isinstance(n, int) or n < 1:
        return Verdict([f"iterations = {n!r}, must be a positive integer"], [], [])
    stopped = raw.get("warmup_problems") or []
    problems = [f"warm-up: {p}" for p in stopped]
    failed: dict[str, set[str]] = {name: set() for name in raw["modes"]}
    seen: dict[str, list[int]] = {}
    for trial in raw["runs"]:
        seen.setdefault(trial["mode"], []).append(trial["trial"])
        findings = _trial_findings(trial, n)
        failed.setdefault(trial["mode"], set()).update(check for check, _ in findings)
        problems += [text for _, text in findings]
    rows: list[dict[str, Any]] = []
    for name in raw["modes"]:
        rounds = seen.get(name, [])
        if not stopped and sorted(rounds) != list(range(t)):  # stopped: no trial ran, on purpose
            problems.append(f"{name}: trials {sorted(rounds)} recorded, must be one per round "
                            f"0..{t - 1} ({t} trials)")
        path = path_problems(modes.get(name), raw.get("paths", {}).get(name))
        if path:
            failed[name].add("path")
        problems += path
        rows += _mode_rows(raw, name, failed[name])
    problems += array_problems(raw.get("array"))
    device: list[dict[str, Any]] = []
    if raw.get("device") is not None:
        device, found = device_checks.output_checks(raw["device"])
        problems += found
    return Verdict(problems, rows, device)
