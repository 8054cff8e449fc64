"""The doorbell-bank device's pure model: variants, the guest's work and the
consumer's bookkeeping.  The checks on what a run did are
:mod:`payload.device.checks`; the scenario's targets are the host's
(:mod:`harness.bench.targets`).

Nothing here touches KVM, threads or memory, so the host tests can drive
it with made-up observations (``tests/host/test_device_model.py``) and the
in-VM rig uses the same code on real ones.

The device: :data:`QUEUES` submission queues with a 4-byte tail doorbell
each.  The guest writes increasing tails in a pseudo-random queue order
(:func:`tail_pattern`); a device thread wakes on an eventfd, loads all 64
tails and consumes every queue whose tail moved (:class:`Consumer`).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress

from payload.guest.queues import MAX_TAIL, QUEUES

DEFAULT_WRITES = 4000
"""Doorbell writes per run: several thousand, and what fits in the guest's
RAM as straight-line code for the shadow variant (about 4090)."""
DEFAULT_ROUNDS = 7
"""Interleaved rounds; with the warm-up that is 24 runs of 4000 writes:
28 s inside the test VM under TCG here (27.5 and 28.6 s in two runs), 54 s
with the VM's boot."""
DEFAULT_SEED = 2009


def runner_timeout(writes: int, rounds: int) -> float:
    """Seconds ``python -m payload.device`` may take: 1 ms per write (about
    3.5x the mean of the default run under TCG, 28 s for 96,000 writes) for
    the warm-up and every round of every variant, plus start-up and the
    registration proofs."""
    return 120.0 + (rounds + 1) * len(VARIANTS) * writes * 1e-3

MAX_STEP = 3
"""A write advances its queue's tail by 1..MAX_STEP entries, so tails skip
values and a load that returned a value the guest never wrote (a torn or
stale read) is caught by :func:`consumer_problems`."""


@dataclass(frozen=True)
class Variant:
    """One way of getting the guest's tails to the device thread."""

    key: str
    """``a``, ``b`` or ``c``: the issue's names."""
    name: str
    what: str
    registrations: int
    """KVM registrations the doorbell array takes."""
    ioctl: str | None
    """The ioctl that registers them, and must be the one that deassigns them."""
    shadow: bool
    """The guest stores each tail in a RAM shadow array before ringing
    (guest cooperation), and the device reads tails from there."""
    exits_per_write: bool
    """Every doorbell write exits to the VMM (KVM_EXIT_MMIO)."""

    def expected_exits(self, writes: int) -> int:
        """KVM_RUN returns per run: the DONE exit, plus one per write in (a)."""
        return writes + 1 if self.exits_per_write else 1


VARIANTS: tuple[Variant, ...] = (
    Variant("a", "userspace", "every doorbell write exits to the VMM (KVM_EXIT_MMIO), which "
            "stores the tail in its register array and kicks the device's eventfd",
            0, None, shadow=False, exits_per_write=True),
    Variant("b", "shadow-ioeventfd", "QEMU NVMe's shadow doorbells: the guest stores the tail in a "
            "RAM shadow array, then rings a doorbell with one KVM_IOEVENTFD per queue (all 64 on "
            "one eventfd); the device reads tails from the shadow",
            QUEUES, "KVM_IOEVENTFD", shadow=True, exits_per_write=False),
    Variant("c", "iofd-buffer", "one KVM_IOFD with KVM_IOFD_FLAG_BUFFER over the 64 doorbells: "
            "KVM stores each tail in a user buffer and signals one eventfd; no guest cooperation",
            1, "KVM_IOFD", shadow=False, exits_per_write=False),
)
BY_KEY: dict[str, Variant] = {v.key: v for v in VARIANTS}
BY_NAME: dict[str, Variant] = {v.name: v for v in VARIANTS}


def get(name: str) -> Variant:
    """A variant by key (``a``) or name (``userspace``); ValueError otherwise."""
    found = BY_KEY.get(name) or BY_NAME.get(name)
    if found is None:
        names = ", ".join(f"{v.key}/{v.name}" for v in VARIANTS)
        raise ValueError(f"unknown variant {name!r}; variants are {names}")
    return found


# --- the guest's work ----------------------------------------------------------------
def _xorshift32(state: int) -> int:
    """Marsaglia's xorshift32: a generator whose sequence is fixed by this
    code alone, so a seed means the same pattern on every Python."""
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    state ^= (state << 5) & 0xFFFFFFFF
    return state


def tail_pattern(writes: int, seed: int = DEFAULT_SEED, queues: int = QUEUES,
                 max_step: int = MAX_STEP) -> list[tuple[int, int]]:
    """``writes`` doorbell writes ``(queue, tail)``: queues in pseudo-random
    order, each queue's tails strictly increasing from 1 by 1..max_step."""
    if writes < 0 or queues < 1 or max_step < 1:
        raise ValueError("writes >= 0, queues >= 1 and max_step >= 1")
    state = (seed & 0xFFFFFFFF) or 1  # xorshift's one fixed point is 0
    tails = [0] * queues
    out = []
    for _ in range(writes):
        state = _xorshift32(state)
        queue = state % queues
        state = _xorshift32(state)
        tails[queue] += 1 + state % max_step
        if tails[queue] > MAX_TAIL:
            raise ValueError(f"queue {queue}'s tail passed {MAX_TAIL}: fewer writes")
        out.append((queue, tails[queue]))
    return out


def last_tails(pattern: Sequence[tuple[int, int]], queues: int = QUEUES) -> list[int]:
    """Each queue's last tail written (0 for a queue never written)."""
    tails = [0] * queues
    for queue, tail in pattern:
        tails[queue] = tail
    return tails


def written_tails(pattern: Sequence[tuple[int, int]], queues: int = QUEUES) -> list[list[int]]:
    """Per queue, the tails the guest wrote, in order (increasing)."""
    out: list[list[int]] = [[] for _ in range(queues)]
    for queue, tail in pattern:
        out[queue].append(tail)
    return out


# --- the device's consumer -------------------------------------------------------------
@dataclass
class Consumer:
    """What the device has consumed: per queue, the tail it consumed up to.

    :meth:`observe` is the device's "find the queues whose tail moved and
    consume them": entries ``(consumed, tail]`` of each such queue are
    consumed, once.  A tail below what was consumed would mean consuming
    entries twice (or the register went backwards): it is recorded as a
    regression and not consumed.
    """

    queues: int = QUEUES
    consumed: list[int] = field(default_factory=list)
    history: list[list[int]] = field(default_factory=list)
    """Per queue, every tail it was consumed up to, in order."""
    regressions: list[tuple[int, int, int]] = field(default_factory=list)
    """``(queue, consumed, loaded)`` for every load below the consumed tail."""
    entries: int = 0
    """Queue entries consumed in all."""
    moves: int = 0
    """(scan, queue) pairs in which the queue's tail had moved."""
    scans: int = 0

    def __post_init__(self) -> None:
        if not self.consumed:
            self.consumed = [0] * self.queues
        if not self.history:
            self.history = [[] for _ in range(self.queues)]

    def observe(self, tails: Sequence[int]) -> int:
        """Consume every queue whose loaded tail differs from the consumed
        one; returns how many moved.  The comparison runs in C (map and
        compress), since this runs on every device wakeup."""
        if len(tails) != self.queues:
            raise ValueError(f"{len(tails)} tails for {self.queues} queues")
        self.scans += 1
        moved = 0
        consumed = self.consumed
        for queue in compress(range(self.queues), map(operator.ne, tails, consumed)):
            tail, done = tails[queue], consumed[queue]
            if tail < done:
                self.regressions.append((queue, done, tail))
                continue
            consumed[queue] = tail
            self.history[queue].append(tail)
            self.entries += tail - done
            moved += 1
        self.moves += moved
        return moved


@dataclass
class DeviceRecord:
    """What the device thread saw in one run (filled in by the thread)."""

    consumer: Consumer = field(default_factory=Consumer)
    wakeups: int = 0
    """eventfd reads that returned signals (> 0), the final drain excluded
    when it found none."""
    signals: int = 0
    """Sum of what those reads returned: one per claimed or kicked write."""
    snapshots: list[tuple[int, list[int]]] = field(default_factory=list)
    """``(signals so far, tails loaded right after)`` per wakeup, for
    :func:`ordering_problems`."""
    final: list[int] = field(default_factory=list)
    """The tails loaded by the drain after the run."""
    consumed_by_signals: list[int] = field(default_factory=list)
    """Per queue, the tail consumed up to before the drain: what the
    signals alone delivered.  The drain would make up for a lost signal,
    so "nothing lost" is checked on this, not on the consumer after it."""
    cpu_ns: int = 0
    """The device thread's CPU time until it read the stop: on a one-CPU
    machine (the test VM) time the vCPU thread did not run."""
