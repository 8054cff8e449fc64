"""Seeded, model-checked fuzzing of KVM_IOFD (``python -m payload.fuzz``).

A run draws cases from a seeded generator (:mod:`.generate`), predicts each
one's result with a pure-Python model of api.rst's KVM_IOFD section
(:mod:`.model`, which never follows the C), runs it
on the real kernel (:mod:`.kvm_side`) and stops at the first disagreement,
printing the seed, the case index, the case, the recent history and the
model's registrations.  The same seed replays the same cases.

Case kinds: KVM_IOFD with random and edge-case addr/len/flags/pad/fd (closed,
negative, huge, a pipe, /dev/null, this VM's fd, another VM's fd, /dev/kvm,
a dup of a registered eventfd) and buffer (KVM_IOFD_FLAG_BUFFER over pool
buffers, a read-only one, a PROT_NONE hole, unmapped and kernel addresses,
a buffer without the flag), assign/deassign sequences with near-miss
deassigns, bulk fills of one bus up to its device limit (NR_IOBUS_DEVS,
then ENOSPC), KVM_IOEVENTFD next to iofds, an unreadable argument (EFAULT), a
wrong struct size (ENOTTY), closing a registered eventfd, making a pool
buffer read-only or writable again under its iofds, destroying the VM
with everything in it, coalesced MMIO and PIO zones, KVM_CREATE_IRQCHIP and
KVM_CREATE_PIT2 next to iofds, and probes: a guest program (1-, 2- and
4-byte accesses, 16-byte MMIO stores, MMIO accesses that cross a page)
whose exits, reads, eventfd signals and stores into the pool buffers are
compared with the model's prediction.  A mismatch report names the api.rst
item the model's answer comes from.  The summary gives the rate and the
coverage: distinct (operation, errno) pairs and access shapes (bus, size,
position against the iofds, page-crossing).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from payload.fuzz import model as m
from payload.fuzz.generate import Generator
from payload.fuzz.kvm_side import READ_VALUE, KvmSide, ProbeResult
from payload.fuzz.model import Case, Model, ProbeExpect
from payload.kvm.libc import errno_name

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
    """Most iofds the VM held at once, both buses together."""
    max_bus_devices: int = 0
    """Most devices counting against the bus limit (NR_IOBUS_DEVS) on one
    bus at once: the limit was reached if this equals it."""
    buffer_outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    """Results of KVM_IOFD cases with KVM_IOFD_FLAG_BUFFER or a non-zero
    buffer, as "assign EFAULT", "deassign ok", ..."""
    buffer_stores: int = 0
    """Guest writes the model says were stored in a pool buffer (and the
    kernel agreed)."""
    buffer_loads: int = 0
    """Guest reads served from a pool buffer."""
    buffer_faults: int = 0
    """Accesses inside a buffered iofd that exited because the buffer could
    not take them (read-only, the hole, unmapped raw addresses)."""
    errno_pairs: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    """(operation, errno name) -> cases, e.g. ("iofd assign", "EEXIST")."""
    shapes: collections.Counter[tuple[str, int, str, bool]] = field(default_factory=collections.Counter)
    """(bus, size, position, page-crossing) -> guest accesses probed; the
    position is "inside", "straddling" or "outside" the iofds on the bus."""
    last: str = ""
    """The latest case's result, for the history."""

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds > 0 else 0.0

    def coverage(self) -> dict[str, int]:
        """The coverage numbers the summary prints, for tests."""
        return {
            "errno_pairs": len(self.errno_pairs),
            "shapes": len(self.shapes),
            "page_crossing_shapes": sum(1 for s in self.shapes if s[3]),
            "straddling_shapes": sum(1 for s in self.shapes if s[2] == "straddling"),
        }

    def coverage_text(self) -> str:
        """The coverage, one line per dimension, for the end of a run."""
        pairs = ", ".join(f"{op} {err} {n}" for (op, err), n in sorted(self.errno_pairs.items()))
        shapes = ", ".join(
            f"{bus}{size} {pos}{' page-crossing' if cross else ''} {n}"
            for (bus, size, pos, cross), n in sorted(self.shapes.items())
        )
        cov = self.coverage()
        return (
            f"coverage: {cov['errno_pairs']} distinct (operation, errno) pairs: {pairs}\n"
            f"coverage: {cov['shapes']} access shapes ({cov['page_crossing_shapes']} page-crossing, "
            f"{cov['straddling_shapes']} straddling an iofd edge): {shapes}"
        )

    def summary(self) -> str:
        by = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"seed {self.seed}: {self.cases} cases in {self.seconds:.1f} s = {self.rate:.0f} cases/s; "
            f"{self.probes} probes ({self.probe_accesses} guest accesses); "
            f"most iofds held at once {self.max_iofds} (on one bus {self.max_bus_devices}); "
            f"results: {by}; "
            f"buffers: {self.buffer_stores} stores, {self.buffer_loads} loads, "
            f"{self.buffer_faults} faults that exited; "
            f"buffer cases: {', '.join(f'{k} {v}' for k, v in sorted(self.buffer_outcomes.items()))}\n"
            + self.coverage_text()
        )


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _buffer_diff(slot: int, got: bytes | None, want: bytes) -> str:
    """Where pool buffer ``slot`` differs from the model, briefly."""
    if got is None:
        return f"buffer {slot}: the kernel side did not report it"
    bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    shown = ", ".join(f"+{i:#x}: kernel {got[i]:#04x} model {want[i]:#04x}" for i in bad[:8])
    return f"buffer {slot}: {len(bad)} bytes differ ({shown}{', ...' if len(bad) > 8 else ''})"


ACCESSES_ITEM = 'api.rst 4.146 KVM_IOFD "Accesses", "Buffer" and "Overlaps"'
"""What a probe's expectation follows."""


def _probe_diff(model: Model, case: Case, got: ProbeResult) -> tuple[list[str], ProbeExpect]:
    """The differences between the kernel's probe and the model's, and the
    model's expectation (to commit when there are none)."""
    exp = model.probe(case.accesses, READ_VALUE)
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
    for slot, want_bytes in exp.buffers.items():
        if got.buffers.get(slot) != want_bytes:
            problems.append(_buffer_diff(slot, got.buffers.get(slot), want_bytes))
    return problems, exp


def run(
    seed: int,
    cases: int | None = None,
    seconds: float | None = None,
    *,
    probes: bool = True,
    iofd: bool = True,
    log: Callable[[str], None] | None = print,
) -> Stats:
    """Fuzz until ``cases`` cases or ``seconds`` seconds, whichever is first.

    Raises :class:`Mismatch` at the first disagreement.  ``iofd=False`` fuzzes
    only the mainline half (KVM_IOEVENTFD, coalesced zones, in-kernel
    devices and probes), for kernels without the patch; there, too, the
    model is the documented one (every matching device is found), so a
    kernel without patch 1 can disagree.
    """
    if cases is None and seconds is None:
        raise ValueError("give a case count, a time budget or both")
    say = log or (lambda _text: None)
    say(f"fuzz seed {seed} (replay: python -m payload.fuzz --seed {seed})")
    kvm = KvmSide(SLOTS, iofd=iofd)
    try:
        if iofd and kvm.iofd_cap != 1:
            raise RuntimeError(
                f"KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is {kvm.iofd_cap}: "
                + ("not the patched kernel" if kvm.iofd_cap == 0 else "not series v2, whose answer is 1")
            )
        # The bus limit is api.rst's NR_IOBUS_DEVS, not the capability.
        model = Model(SLOTS, user_max=kvm.user_max)
        gen = Generator(seed, model, probes=probes, iofd=iofd)
        stats = Stats(seed)
        history: collections.deque[str] = collections.deque(maxlen=HISTORY)
        start = time.monotonic()
        deadline = None if seconds is None else start + seconds
        index = 0
        while (cases is None or index < cases) and (deadline is None or time.monotonic() < deadline):
            case = gen.next_case(index)
            problems = _step(kvm, model, case, stats)
            if problems:
                stats.seconds = time.monotonic() - start
                raise Mismatch(_report(seed, index, case, problems, history, model, kvm))
            history.append(f"#{index} {case} -> {stats.last}")
            if case.op in m.IOCTL_OPS:
                stats.max_iofds = max(stats.max_iofds, len(model.iofds))
                stats.max_bus_devices = max(
                    stats.max_bus_devices, model.bus_devices(True), model.bus_devices(False)
                )
            index += 1
        stats.cases = index
        stats.seconds = time.monotonic() - start
        say(stats.summary())
        return stats
    finally:
        kvm.close()


def _step(kvm: KvmSide, model: Model, case: Case, stats: Stats) -> list[str]:
    """Run one case on both sides; the differences, if any."""
    if case.op == m.RECREATE:
        kvm.recreate(case.slot)
        model.recreate(case.slot)
    elif case.op == m.PROTECT:
        kvm.protect(case.slot, case.writable)
        model.protect(case.slot, case.writable)
    elif case.op == m.RESET_VM:
        kvm.reset_vm()
        model.reset_vm()
    elif case.op == m.PROBE:
        return _probe_step(kvm, model, case, stats)
    else:
        return _ioctl_step(kvm, model, case, stats)
    stats.last = "done"
    stats.outcomes[case.op] += 1
    return []


def _probe_step(kvm: KvmSide, model: Model, case: Case, stats: Stats) -> list[str]:
    for acc in case.accesses:
        bus = "pio" if acc.pio else "mmio"
        stats.shapes[(bus, acc.size, model.position(acc), acc.page_crossing)] += 1
    got = kvm.probe(case)
    model.vcpu = True  # KvmSide's probe made one if there was none
    stats.probes += 1
    stats.probe_accesses += len(case.accesses)
    stats.last = f"{got.kvm_exits} exits, signals {got.signals}"
    problems, exp = _probe_diff(model, case, got)
    if problems:
        return [*problems, f"(the model follows {ACCESSES_ITEM})"]
    model.commit(exp)
    stats.buffer_stores += exp.stores
    stats.buffer_loads += exp.loads
    stats.buffer_faults += exp.faults
    stats.outcomes[case.op] += 1
    return []


def _ioctl_step(kvm: KvmSide, model: Model, case: Case, stats: Stats) -> list[str]:
    saved = model.snapshot()
    want = model.apply(case)
    why = model.why()
    got_errno = kvm.ioctl(case)
    stats.last = errno_name(got_errno)
    stats.outcomes[f"{case.op} {errno_name(got_errno)}"] += 1
    stats.errno_pairs[(case.operation, errno_name(got_errno))] += 1
    if case.buffered or model.buffer_nonzero(case.buffer):
        what = "deassign" if case.deassign else "assign"
        stats.buffer_outcomes[f"{what} {errno_name(got_errno)}"] += 1
    others = sorted(model.allowed - {want})
    if got_errno != want and got_errno not in others:
        model.restore(saved)  # report the state the case met
        also = f" (or {', '.join(map(errno_name, others))})" if others else ""
        return [
            f"kernel returned {errno_name(got_errno)}, model expected {errno_name(want)}{also}",
            f"model: {why}",
        ]
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
