"""Seeded case generation: reproducible from the seed and the model alone.

Each case depends only on the random stream and on the model's state, and
the model's state only on earlier cases (the run stops at the first
disagreement with the kernel), so ``--seed S`` replays a run exactly, case
for case, in any process.

Arguments are mostly near something interesting (an edge of a registered
range, a bus limit, S32_MAX, 2**64) rather than uniform: uniform u64s would
be EINVAL or a lonely success almost every time.  The run moves between
three moods so that it also reaches the per-VM limit and empties it again:

* ``mixed``: anything, including garbage arguments and bad fds;
* ``fill``: mostly fresh, valid assigns, so ENOSPC is reached;
* ``drain``: mostly exact deassigns (and near misses) of what is there.
"""

from __future__ import annotations

import random

from payload.fuzz import model as m
from payload.fuzz.model import Access, Case, FdRef, Model
from payload.kvm import uapi

PAD_LEN = 12
MMIO_WINDOW = (0x8000, 0x10000)
"""Unbacked guest addresses a probe can reach with 16-bit operands."""
PIO_WINDOWS = ((0x0600, 0x0800), (0x00E0, 0x0110), (0xFF00, 0x10000))
"""Port windows registrations cluster in; the second holds DONE_PORT (0xf4)."""
PAGE = 0x1000

MOODS = ("mixed", "fill", "drain")
OP_WEIGHTS = {
    # mood: (assign near, deassign, garbage iofd, ioeventfd, special)
    "mixed": (30, 20, 25, 20, 5),
    "fill": (80, 5, 5, 8, 2),
    "drain": (10, 70, 5, 12, 3),
}
SPECIAL_WEIGHTS = {m.EFAULT_OP: 4, m.BADSIZE: 4, m.RECREATE: 4, m.RESET_VM: 1}
INTERESTING_LENGTHS = (
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    0xFFF,
    0x1000,
    0x10000,
    m.S32_MAX,
    m.S32_MAX + 1,
    m.U32_MASK,
)
INTERESTING_MMIO = (0, 1, 0xFEE00000, 0xFEC00000, 1 << 63, m.U64_MASK, m.U64_MASK - 7, 1 << 52)
BAD_FDS = {
    m.CLOSED: 0,
    m.NEGATIVE: -1,
    m.HUGE: m.S32_MAX,
    m.PIPE: 0,
    m.DEVNULL: 0,
    m.VM_FD: 0,
    m.OTHER_VM: 0,
    m.KVM_DEV: 0,
}


class Generator:
    """Produces the case sequence of one seed; ``ops`` limits the kinds."""

    def __init__(
        self,
        seed: int,
        model: Model,
        *,
        probes: bool = True,
        iofd: bool = True,
        probe_every: int = 40,
    ) -> None:
        self.rng = random.Random(seed)
        self.model = model
        self.probes = probes
        self.iofd = iofd
        self.probe_every = probe_every
        # Start by filling up: every run, even a short one, then reaches the limit.
        self.mood = "fill"
        self._mood_left = 4 * model.limit

    # -- small pieces ---------------------------------------------------------------
    def _u64(self) -> int:
        return self.rng.getrandbits(64)

    def _fd(self, good: float = 0.9) -> FdRef:
        rng = self.rng
        slots = len(self.model.slot_ctx)
        if rng.random() < good:
            return FdRef(m.EVENTFD, rng.randrange(slots), 1 if rng.random() < 0.2 else 0)
        kind = rng.choice(list(BAD_FDS))
        number = BAD_FDS[kind]
        if kind == m.NEGATIVE:
            number = rng.choice((-1, -2, -(1 << 31), -rng.randrange(1, 1 << 31)))
        elif kind == m.HUGE:
            number = rng.choice((m.S32_MAX, 1 << 20, rng.randrange(1 << 20, 1 << 31)))
        return FdRef(kind, number=number)

    def _pad(self) -> bytes:
        if self.rng.random() < 0.95:
            return bytes(PAD_LEN)
        pad = bytearray(PAD_LEN)
        pad[self.rng.randrange(PAD_LEN)] = self.rng.randrange(1, 256)
        return bytes(pad)

    def _flags(self, pio: bool, deassign: bool, valid: int, pio_bit: int, deassign_bit: int) -> int:
        flags = (pio_bit if pio else 0) | (deassign_bit if deassign else 0)
        r = self.rng.random()
        if r < 0.03:
            flags |= 1 << self.rng.randrange(valid.bit_length(), 32)
        elif r < 0.04:
            flags = self.rng.getrandbits(32)
        return flags

    def _small_len(self) -> int:
        r = self.rng.random()
        if r < 0.7:
            return self.rng.randint(1, 16)
        if r < 0.9:
            return self.rng.randint(17, 0x400)
        return self.rng.choice(INTERESTING_LENGTHS)

    def _window_addr(self, pio: bool, length: int) -> int:
        rng = self.rng
        if pio:
            lo, hi = rng.choice(PIO_WINDOWS)
        else:
            lo, hi = MMIO_WINDOW
        return rng.randrange(lo, max(lo + 1, hi - min(length, hi - lo - 1)))

    def _near(self, pio: bool, length: int) -> int:
        """An address at or next to an edge of something on the bus."""
        rng = self.rng
        edges = [r for r in self.model.iofds if r.pio == pio] + [
            e for e in self.model.ioeventfds if e.pio == pio
        ]
        if not edges or rng.random() < 0.3:
            return self._window_addr(pio, length)
        target = rng.choice(edges)
        span = target.length if isinstance(target, m.Iofd) else target.span
        base = rng.choice(
            (
                target.addr - length,
                target.addr - length + 1,
                target.addr - 1,
                target.addr,
                target.addr + 1,
                target.addr + span - 1,
                target.addr + span,
                target.addr + span + rng.randint(0, 8),
            )
        )
        return base & m.U64_MASK

    # -- the case kinds ---------------------------------------------------------------------
    def _iofd_assign(self) -> Case:
        rng = self.rng
        pio = rng.random() < 0.5
        length = self._small_len() if rng.random() < 0.9 else rng.randint(1, 8)
        if self.mood == "fill":  # small ranges, mostly in the roomy MMIO window
            pio = rng.random() < 0.3
            length = rng.randint(1, 8)
        addr = self._near(pio, length) if self.mood != "fill" or rng.random() < 0.2 else self._window_addr(
            pio, length
        )
        flags = self._flags(
            pio, False, m.IOFD_VALID_FLAGS, uapi.KVM_IOFD_FLAG_PIO, uapi.KVM_IOFD_FLAG_DEASSIGN
        )
        return Case(m.IOFD, addr, length, self._fd(0.93), flags, self._pad())

    def _iofd_deassign(self) -> Case:
        rng = self.rng
        live = self.model.claimable() or self.model.iofds
        if not live or rng.random() < 0.1:
            pio = rng.random() < 0.5
            length = self._small_len()
            flags = self._flags(
                pio, True, m.IOFD_VALID_FLAGS, uapi.KVM_IOFD_FLAG_PIO, uapi.KVM_IOFD_FLAG_DEASSIGN
            )
            return Case(m.IOFD, self._near(pio, length), length, self._fd(), flags, self._pad())
        r = rng.choice(live)
        pio, addr, length = r.pio, r.addr, r.length
        slots = [i for i, c in enumerate(self.model.slot_ctx) if c == r.ctx]
        fd = FdRef(m.EVENTFD, slots[0], rng.randrange(2)) if slots else self._fd()
        if rng.random() < 0.35:  # a near miss: one field off
            what = rng.randrange(6)
            if what == 0:
                addr = (addr + rng.choice((-1, 1))) & m.U64_MASK
            elif what == 1:
                length = max(0, length + rng.choice((-1, 1)))
            elif what == 2:
                fd = self._fd(0.7)
            elif what == 3:
                pio = not pio
            elif what == 4:
                other = [i for i, c in enumerate(self.model.slot_ctx) if c != r.ctx]
                if other:
                    fd = FdRef(m.EVENTFD, rng.choice(other))
            else:
                length = rng.choice(INTERESTING_LENGTHS)
        flags = self._flags(
            pio, True, m.IOFD_VALID_FLAGS, uapi.KVM_IOFD_FLAG_PIO, uapi.KVM_IOFD_FLAG_DEASSIGN
        )
        return Case(m.IOFD, addr, length, fd, flags, self._pad())

    def _iofd_garbage(self) -> Case:
        rng = self.rng
        pio = rng.random() < 0.5
        deassign = rng.random() < 0.3
        length = rng.choice(INTERESTING_LENGTHS) if rng.random() < 0.6 else rng.getrandbits(32)
        r = rng.random()
        if r < 0.3:
            addr = rng.choice(INTERESTING_MMIO)
        elif r < 0.5:
            addr = (rng.choice((m.PIO_LIMIT, 1 << 64, 0xFFFF + 1)) - rng.randint(0, 8)) & m.U64_MASK
        elif r < 0.7:
            addr = (m.U64_MASK + 1 - length - rng.randint(-1, 1)) & m.U64_MASK
        else:
            addr = self._u64() if rng.random() < 0.5 else rng.randrange(0x10000)
        flags = self._flags(
            pio, deassign, m.IOFD_VALID_FLAGS, uapi.KVM_IOFD_FLAG_PIO, uapi.KVM_IOFD_FLAG_DEASSIGN
        )
        return Case(m.IOFD, addr, length, self._fd(0.6), flags, self._pad())

    def _ioeventfd(self) -> Case:
        rng = self.rng
        pio = rng.random() < 0.5
        existing = self.model.ioeventfds
        if existing and rng.random() < 0.4:  # deassign, exact or one field off
            e = rng.choice(existing)
            slots = [i for i, c in enumerate(self.model.slot_ctx) if c == e.ctx]
            fd = FdRef(m.EVENTFD, slots[0], rng.randrange(2)) if slots else self._fd()
            addr, length, datamatch, pio = e.addr, e.length, e.datamatch, e.pio
            if rng.random() < 0.3:
                what = rng.randrange(4)
                if what == 0:
                    addr += 1
                elif what == 1:
                    length = rng.choice(m.IOEVENTFD_LENGTHS)
                elif what == 2:
                    datamatch = None if datamatch is not None else 0
                else:
                    datamatch = (datamatch or 0) + 1
            flags = (uapi.KVM_IOEVENTFD_FLAG_PIO if pio else 0) | uapi.KVM_IOEVENTFD_FLAG_DEASSIGN
            if datamatch is not None:
                flags |= uapi.KVM_IOEVENTFD_FLAG_DATAMATCH
            return Case(m.IOEVENTFD, addr, length, fd, flags, datamatch=datamatch or 0)
        length = rng.choice(m.IOEVENTFD_LENGTHS) if rng.random() < 0.95 else rng.choice((3, 16))
        addr = self._near(pio, max(length, 1))
        if rng.random() < 0.03:
            addr = rng.choice(INTERESTING_MMIO)
        flags = self._flags(
            pio, False, m.IOEVENTFD_VALID_FLAGS, uapi.KVM_IOEVENTFD_FLAG_PIO, uapi.KVM_IOEVENTFD_FLAG_DEASSIGN
        )
        if flags & m.IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY:  # another bus: not modelled
            flags ^= m.IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY | m.IOEVENTFD_FLAG_FAST_MMIO
        datamatch = 0
        if rng.random() < 0.4:
            flags |= uapi.KVM_IOEVENTFD_FLAG_DATAMATCH
            # The probes write PATTERN, so a datamatch on it can hit.
            datamatch = (m.PATTERN & m.mask(max(length, 1))) if rng.random() < 0.5 else rng.randrange(256)
        return Case(m.IOEVENTFD, addr, length, self._fd(0.95), flags, datamatch=datamatch)

    def _special(self) -> Case:
        rng = self.rng
        kinds = [k for k in SPECIAL_WEIGHTS if self.iofd or k not in (m.EFAULT_OP, m.BADSIZE)]
        if self.mood == "fill":  # a reset would undo the filling
            kinds.remove(m.RESET_VM)
        op = rng.choices(kinds, [SPECIAL_WEIGHTS[k] for k in kinds])[0]
        if op == m.RECREATE:
            return Case(op, slot=rng.randrange(len(self.model.slot_ctx)))
        if op == m.BADSIZE:
            return Case(op, size=rng.choice((0, 24, 28, 36, 64)))
        return Case(op)

    def probe(self) -> Case:
        """4 to 12 accesses, most at the edges of what is registered."""
        rng = self.rng
        model = self.model
        accesses: list[Access] = []
        tries = 0
        want = rng.randint(4, 12)
        while len(accesses) < want and tries < 200:
            tries += 1
            pio = rng.random() < 0.5
            size = rng.choice((1, 2, 4))
            write = rng.random() < 0.7
            targets = [r for r in model.iofds if r.pio == pio] + [
                e for e in model.ioeventfds if e.pio == pio
            ]
            if targets and rng.random() < 0.8:
                t = rng.choice(targets)
                span = t.length if isinstance(t, m.Iofd) else t.span
                offsets = (-size, -1, 0, 1, span - size, span - 1, span, rng.randrange(span))
                addr = t.addr + rng.choice(offsets)
            elif pio:
                addr = rng.randrange(0x10000)
            else:
                addr = rng.randrange(*MMIO_WINDOW)
            acc = Access(pio, addr, size, write)
            if not (_reachable(acc) and model.probe_safe(acc)):
                continue
            if model.fast_mmio_ambiguous(acc) and model.claimant(acc, m.PATTERN) != model.dispatch(
                acc, m.PATTERN
            ):
                continue  # VMX's fast-MMIO bus may or may not hide the io-bus-order bug
            accesses.append(acc)
        return Case(m.PROBE, accesses=tuple(accesses))

    # -- the sequence ---------------------------------------------------------------------
    def next_case(self, index: int) -> Case:
        rng = self.rng
        if self._mood_left <= 0:
            self.mood = rng.choice(MOODS)
            limit = self.model.limit
            self._mood_left = 4 * limit if self.mood == "fill" else rng.randint(50, 400)
        self._mood_left -= 1
        if self.mood == "fill" and len(self.model.iofds) >= self.model.limit:
            self._mood_left = min(self._mood_left, 30)  # a few cases at the limit, then move on
        if self.mood == "drain" and not self.model.iofds:
            self._mood_left = 0
        if self.probes and index % self.probe_every == self.probe_every - 1:
            return self.probe()
        weights = list(OP_WEIGHTS[self.mood])
        if not self.iofd:
            weights[0] = weights[1] = weights[2] = 0
        kind = rng.choices(range(5), weights)[0]
        if kind == 0:
            return self._iofd_assign()
        if kind == 1:
            return self._iofd_deassign()
        if kind == 2:
            return self._iofd_garbage()
        if kind == 3:
            return self._ioeventfd()
        return self._special()


def _reachable(acc: Access) -> bool:
    """Can a probe program perform this access (see payload.guest.programs)?"""
    if acc.pio:
        # A write to DONE_PORT would end the program early (the VMM's convention).
        done = acc.write and acc.addr == m.DONE_PORT
        return acc.addr >= 0 and acc.addr + acc.size <= 0x10000 and not done
    lo, hi = MMIO_WINDOW
    # Stay inside one page: KVM splits a page-crossing MMIO access in two.
    return lo <= acc.addr and acc.addr + acc.size <= hi and acc.addr % PAGE + acc.size <= PAGE
