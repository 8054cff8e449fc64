"""Seeded, model-checked fuzzing of KVM_IOFD (``python -m payload.fuzz``).

A run draws cases from a seeded generator (:mod:`.generate`), predicts each
one's result with a pure-Python model of the patch (:mod:`.model`), runs it
on the real kernel (:mod:`.kvm_side`) and stops at the first disagreement,
printing the seed, the case index, the case, the recent history and the
model's registrations.  The same seed replays the same cases.

Case kinds: KVM_IOFD with random and edge-case addr/len/flags/pad/fd (closed,
negative, huge, a pipe, /dev/null, this VM's fd, another VM's fd, /dev/kvm,
a dup of a registered eventfd), assign/deassign sequences with near-miss
deassigns, KVM_IOEVENTFD next to iofds, an unreadable argument (EFAULT), a
wrong struct size (ENOTTY), closing a registered eventfd, destroying the VM
with everything in it, and probes: a guest program whose exits, reads and
eventfd signals are compared with the model's prediction.
"""

from __future__ import annotations

import collections
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from payload.fuzz import model as m
from payload.fuzz.generate import Generator
from payload.fuzz.kvm_side import READ_VALUE, KvmSide, ProbeResult
from payload.fuzz.model import Case, Model

SLOTS = 4
"""Eventfds in the pool."""
HISTORY = 25
"""Cases shown before the failing one in a mismatch report."""


class Mismatch(AssertionError):
    """The kernel and the model disagree; ``report`` says how to replay it."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


@dataclass
class Stats:
    seed: int
    cases: int = 0
    seconds: float = 0.0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    probes: int = 0
    probe_accesses: int = 0
    max_iofds: int = 0
    known_bug_hits: int = 0
    """Probes where the kernel did not do what the documentation says, but
    exactly what the model's replay of the known io-bus ordering bug says."""
    first_known_bug: str = ""
    last: str = ""
    """The latest case's result, for the history."""

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        by = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"seed {self.seed}: {self.cases} cases in {self.seconds:.1f} s = {self.rate:.0f} cases/s; "
            f"{self.probes} probes ({self.probe_accesses} guest accesses); "
            f"most iofds held at once {self.max_iofds}; results: {by}"
            + (
                f"\nKNOWN BUG io-bus-order reproduced by {self.known_bug_hits} probes; first:\n"
                + self.first_known_bug
                if self.known_bug_hits
                else ""
            )
        )


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def errno_name(code: int) -> str:
    return "ok" if code == 0 else errno.errorcode.get(code, str(code))


def _probe_diff(model: Model, case: Case, got: ProbeResult, as_built: bool = False) -> list[str]:
    exp = model.probe(case.accesses, READ_VALUE, as_built=as_built)
    problems = []
    if got.error:
        problems.append(f"guest failed: {got.error}")
    if got.end != exp.end and not got.error:
        problems.append(f"end: kernel {got.end!r}, model {exp.end!r}")
    if got.kvm_exits != exp.kvm_exits and not got.error:
        problems.append(f"KVM_RUN exits: kernel {got.kvm_exits}, model {exp.kvm_exits}")
    if got.exits != exp.exits:
        problems.append(f"accesses that exited:\n    kernel {got.exits}\n    model  {exp.exits}")
    if got.result != exp.result:
        problems.append(f"OR of reads: kernel {got.result:#x}, model {exp.result:#x}")
    for slot, count in got.signals.items():
        want = exp.signals.get(model.slot_ctx[slot], 0)
        if count != want:
            problems.append(f"efd{slot} signalled {count} times, model says {want}")
    return problems


def run(
    seed: int,
    cases: int | None = None,
    seconds: float | None = None,
    *,
    probes: bool = True,
    iofd: bool = True,
    known_bugs: bool = False,
    log: Callable[[str], None] | None = print,
) -> Stats:
    """Fuzz until ``cases`` cases or ``seconds`` seconds, whichever is first.

    Raises :class:`Mismatch` at the first disagreement.  ``iofd=False`` fuzzes
    only the mainline half (KVM_IOEVENTFD and probes), for kernels without
    the patch.  ``known_bugs=True`` lets a probe pass when the kernel does
    exactly what the model's replay of a bug in KNOWN_BUGS predicts (it is
    counted and the first one is reported), so a run can look past a known
    bug for new ones; by default such a probe is a mismatch.
    """
    if cases is None and seconds is None:
        raise ValueError("give a case count, a time budget or both")
    say = log or (lambda _text: None)
    say(f"fuzz seed {seed} (replay: python -m payload.fuzz --seed {seed})")
    kvm = KvmSide(SLOTS, iofd=iofd)
    try:
        if iofd and kvm.limit <= 0:
            raise RuntimeError("KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is 0: not the patched kernel")
        model = Model(kvm.limit if iofd else 1, SLOTS)
        gen = Generator(seed, model, probes=probes, iofd=iofd)
        stats = Stats(seed)
        history: collections.deque[str] = collections.deque(maxlen=HISTORY)
        start = time.monotonic()
        deadline = None if seconds is None else start + seconds
        index = 0
        while (cases is None or index < cases) and (deadline is None or time.monotonic() < deadline):
            case = gen.next_case(index)
            problems = _step(kvm, model, case, stats, known_bugs)
            if problems:
                stats.seconds = time.monotonic() - start
                raise Mismatch(_report(seed, index, case, problems, history, model, kvm))
            history.append(f"#{index} {case} -> {stats.last}")
            stats.max_iofds = max(stats.max_iofds, len(model.iofds))
            index += 1
        stats.cases = index
        stats.seconds = time.monotonic() - start
        say(stats.summary())
        return stats
    finally:
        kvm.close()


def _step(kvm: KvmSide, model: Model, case: Case, stats: Stats, known_bugs: bool = False) -> list[str]:
    """Run one case on both sides; the differences, if any."""
    if case.op == m.RECREATE:
        kvm.recreate(case.slot)
        model.recreate(case.slot)
        stats.last = "done"
    elif case.op == m.RESET_VM:
        kvm.reset_vm()
        model.reset_vm()
        stats.last = "done"
    elif case.op == m.PROBE:
        got = kvm.probe(case)
        stats.probes += 1
        stats.probe_accesses += len(case.accesses)
        stats.last = f"{got.kvm_exits} exits, signals {got.signals}"
        problems = _probe_diff(model, case, got)
        if problems and known_bugs and not _probe_diff(model, case, got, as_built=True):
            stats.known_bug_hits += 1
            if not stats.first_known_bug:
                stats.first_known_bug = "\n".join(
                    [f"  case {case}", *(f"  {p}" for p in problems), model.describe()]
                )
            problems = []
        if problems:
            built = _probe_diff(model, case, got, as_built=True)
            if not built:
                problems.append(
                    "(the kernel did exactly what the known io-bus-order bug predicts; "
                    "--known-bugs looks past it)"
                )
            return problems
    else:
        before = (list(model.iofds), list(model.ioeventfds), {k: list(v) for k, v in model.buses.items()})
        want = model.apply(case)
        got_errno = kvm.ioctl(case)
        stats.last = errno_name(got_errno)
        stats.outcomes[f"{case.op} {errno_name(got_errno)}"] += 1
        if got_errno != want:
            model.iofds, model.ioeventfds, model.buses = before  # report the state the case met
            return [f"kernel returned {errno_name(got_errno)}, model expected {errno_name(want)}"]
        return []
    stats.outcomes[case.op] += 1
    return []


def _report(
    seed: int,
    index: int,
    case: Case,
    problems: list[str],
    history: collections.deque[str],
    model: Model,
    kvm: KvmSide,
) -> str:
    lines = [
        f"KVM_IOFD fuzz MISMATCH at case #{index}, seed {seed}",
        f"replay: python -m payload.fuzz --seed {seed} --cases {index + 1}",
        f"case: {case}",
        *(f"  {p}" for p in problems),
    ]
    env = kvm.check_environment()
    if env:
        lines.append(f"  (environment: {env})")
    lines.append(f"model state before the case:\n{model.describe()}")
    lines.append(f"last {len(history)} cases:")
    lines += [f"  {h}" for h in history]
    return "\n".join(lines)


__all__ = ["Mismatch", "Stats", "errno_name", "new_seed", "run"]
