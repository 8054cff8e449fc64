"""Seeded case generation: reproducible from the seed and the model alone.

Each case depends only on the random stream and on the model's state, and
the model's state only on earlier cases (the run stops at the first
disagreement with the kernel), so ``--seed S`` replays a run exactly, case
for case, in any process.

Arguments are mostly near something interesting (an edge of a registered
range, a bus limit, S32_MAX, 2**64) rather than uniform: uniform u64s would
be EINVAL or a lonely success almost every time.  The run moves between
three moods so that it also reaches a bus's device limit and empties it
again:

* ``mixed``: anything, including garbage arguments and bad fds;
* ``fill``: first a bulk fill of one bus (distinct free 1-byte iofds until
  the bus holds NR_IOBUS_DEVS devices, then a few more that must be
  ENOSPC), then mostly fresh, valid assigns on that bus near the limit;
* ``drain``: mostly exact deassigns (and near misses) of what is there.

About a third of the valid assigns are buffer-mode (KVM_IOFD_FLAG_BUFFER):
mostly at an offset into a pool buffer (read-write, or the read-only one),
some over the PROT_NONE hole (and PROTECT cases make pool buffers read-only
or writable again under live iofds), a raw user address that maps nothing (0, a
small one, or the top page of user space, right up to its last byte), and
some must be EFAULT (a kernel address, one byte past user space, a range
that wraps past 2**64).  Now and then a buffer is given without the flag
(EINVAL), or with the flag on a deassign (not compared).

Other devices share the buses with iofds, so api.rst's "Overlaps" is
fuzzed from both sides: coalesced MMIO and PIO zones (register near
registrations, unregister exactly), and after a VM reset, now and then, a
sequence of iofds around the PIC, PIT, speaker and IOAPIC addresses, then
KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2 (each sometimes twice), then more
iofds there.  The generator only makes cases whose answer api.rst gives
(see the model's doc), e.g. KVM_CREATE_IRQCHIP only before the first
probe's vCPU, and no probe while an in-kernel irqchip would make the
program's final HLT block in the kernel.

Probes mix 1-, 2- and 4-byte accesses on both buses with 16-byte MMIO
stores and MMIO accesses that cross a page boundary, mostly at the edges
of registered ranges, so that api.rst's "Accesses" rules (pieces of at most
8 bytes, parts split at the page boundary) are checked.

Every run starts in ``fill``, so every run of a little over a thousand cases
reaches ENOSPC.  A bulk fill is an ordinary sequence of KVM_IOFD cases, each
checked against the model on its own; probes still come every
``probe_every`` cases, so some run with a full bus.
"""

from __future__ import annotations

import random
from collections import deque

from payload.fuzz import model as m
from payload.fuzz.model import Access, Case, FdRef, Model
from payload.kvm import uapi

PAD_LEN = m.PAD_LEN
MMIO_WINDOW = (0x8000, 0x10000)
"""Unbacked guest addresses a probe can reach with 16-bit operands."""
PIO_WINDOWS = ((0x0600, 0x0800), (0x00E0, 0x0110), (0xFF00, 0x10000))
"""Port windows registrations cluster in; the second holds DONE_PORT (0xf4)."""
PAGE = 0x1000
FILL_REGIONS = {False: (MMIO_WINDOW[0], MMIO_WINDOW[0] + 0x2000), True: (0x0800, 0x4000)}
"""Where a bulk fill of the MMIO (False) or PIO (True) bus starts; it runs
upwards from there, within what a probe can reach (FILL_END)."""
FILL_END = {False: MMIO_WINDOW[1], True: 0x10000}
FILL_STRIDES = (1, 2, 3)
"""1: back-to-back ranges; 2, 3: one- and two-byte gaps between them."""
FILL_PAST = 2
"""Registrations a bulk fill tries past the limit: each must be ENOSPC."""
FILL_CHANCE = 0.3
"""How often a later ``fill`` mood starts with a bulk fill (the first always does)."""

MOODS = ("mixed", "fill", "drain")
OP_WEIGHTS = {
    # mood: (assign near, deassign, garbage iofd, ioeventfd, special)
    "mixed": (30, 20, 25, 20, 8),
    "fill": (80, 5, 5, 8, 2),
    "drain": (10, 70, 5, 12, 3),
}
SPECIAL_WEIGHTS = {
    m.EFAULT_OP: 4,
    m.BADSIZE: 4,
    m.RECREATE: 4,
    m.RESET_VM: 1,
    m.PROTECT: 4,
    m.COALESCED: 12,
    m.IRQCHIP: 1,
    m.PIT: 1,
}
DEVICE_SEQUENCE = 0.6
"""How often a VM reset is followed by iofds around the in-kernel devices'
addresses, KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2 and more such iofds."""
DEVICE_EDGES = {
    True: (*(a for a, _ in m.PIC_RANGES), m.PIT_RANGE[0], m.SPEAKER_RANGE[0]),
    False: (m.IOAPIC_RANGE[0],),
}
COALESCED_SIZES = (0, 1, 2, 4, 8, 3, 0x10, 0x100, 0x1000)
WIDE_PROBES = 0.1
"""Share of MMIO probe accesses that are 16-byte stores."""
CROSSING_PROBES = 0.15
"""Share of MMIO probe accesses placed across a page boundary."""
WRITABLE = 0.65
"""How often a PROTECT case makes its buffer writable rather than read-only."""
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
BUFFERED = 0.35
"""Share of assigns that set KVM_IOFD_FLAG_BUFFER."""
STRAY_BUFFER = 0.03
"""Share of cases that give a non-zero buffer without the flag (EINVAL)."""
GOOD_BUFFER_WEIGHTS = {"rw": 10, "ro": 3, "hole": 2, "low": 1, "top": 2}
"""Kinds of buffer that access_ok() accepts, for buffered assigns."""
BAD_BUFFER = 0.12
"""Share of buffered assigns whose buffer access_ok() refuses (EFAULT)."""
KERNEL_BUFFERS = (0xFFFF800000000000, 0xFFFFFFFF81000000, 1 << 63, m.U64_MASK, m.U64_MASK - 7)
LOW_BUFFERS = (0, 1, 0x800, m.RAW_LOW_END - 1)
BUFFER_PROBES = 0.35
"""Share of probe accesses aimed inside a buffered iofd, when there is one."""
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
        self._queue: deque[Case] = deque()
        """Cases already decided (a bulk fill), served before anything else."""
        self._fill_pio = False
        """The bus the latest bulk fill went to."""
        self._filled = False
        self.mood = ""
        self._mood_left = 0
        # Start by filling up: every run of a little over a thousand cases
        # then reaches a bus's limit.
        self._set_mood("fill")

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

    def _good_buffer(self, length: int) -> m.BufRef:
        """A buffer that access_ok() accepts for ``length`` bytes, one the
        model can follow (Model._check_modelled)."""
        rng = self.rng
        kinds = dict(GOOD_BUFFER_WEIGHTS)
        if length > m.BUF_SIZE:
            kinds["rw"] = kinds["ro"] = 0
        if length > m.TOP_SPAN:
            kinds["top"] = 0
        kind = rng.choices(list(kinds), list(kinds.values()))[0]
        if kind in ("rw", "ro"):
            slot = m.READONLY_SLOT if kind == "ro" else rng.randrange(m.READONLY_SLOT)
            room = m.BUF_SIZE - length
            offset = rng.choice((0, room, rng.randint(0, room)))
            return m.BufRef(m.POOL, slot, offset)
        if kind == "hole":
            return m.BufRef(m.HOLE, offset=rng.randrange(0, m.HOLE_SIZE - length + 1, 1 + rng.randrange(8)))
        if kind == "low":
            return m.BufRef(m.RAW, raw=rng.choice(LOW_BUFFERS))
        # The top page: exactly up to the last user byte, or a little short of it.
        back = rng.choice((length, length, rng.randint(length, m.TOP_SPAN)))
        return m.BufRef(m.RAW, raw=self.model.user_max - back)

    def _bad_buffer(self, length: int) -> m.BufRef:
        """A buffer that access_ok() refuses for ``length`` bytes (EFAULT)."""
        rng = self.rng
        top = self.model.user_max
        raw = rng.choice(
            (
                rng.choice(KERNEL_BUFFERS),
                top - length + 1,  # one byte too far
                top - length + rng.randint(1, 64),
                top + 1,
                (1 << 64) - length,  # buffer + len is exactly 2**64: wraps to 0
                rng.getrandbits(64) | (1 << 63),
            )
        )
        return m.BufRef(m.RAW, raw=raw & m.U64_MASK)

    def _any_buffer(self, length: int) -> m.BufRef:
        """A non-zero buffer, good or bad, for cases that must not look at it."""
        if self.rng.random() < 0.5:
            return self._bad_buffer(max(length, 1))
        ref = self._good_buffer(max(1, min(length, m.TOP_SPAN)))
        return ref if self.model.buffer_nonzero(ref) else m.BufRef(m.RAW, raw=1)

    def _buffer(self, length: int) -> tuple[int, m.BufRef | None]:
        """(flag bit, buffer) for an assign: mostly none, a third buffered,
        rarely a buffer without the flag."""
        rng = self.rng
        r = rng.random()
        if r < STRAY_BUFFER:
            return 0, self._any_buffer(length)
        if r > 1 - BUFFERED:
            ok = 0 < length <= m.S32_MAX and rng.random() >= BAD_BUFFER
            ref = self._good_buffer(length) if ok else self._bad_buffer(max(length, 1))
            return uapi.KVM_IOFD_FLAG_BUFFER, ref
        return 0, None

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
        edges = self.model.buses[pio]
        if not edges or rng.random() < 0.3:
            return self._window_addr(pio, length)
        addr, n, _ = rng.choice(edges)
        return self._around(addr, n or 1, length)

    def _around(self, addr: int, span: int, length: int) -> int:
        """An address where a ``length``-byte range meets an edge of [addr, addr + span)."""
        rng = self.rng
        target = m.Fixed("", False, addr, span)
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

    def _device_iofd(self) -> Case:
        """A small iofd at or next to an in-kernel device's addresses."""
        rng = self.rng
        pio = rng.random() < 0.8
        length = rng.randint(1, 8)
        edge = rng.choice(DEVICE_EDGES[pio])
        span = {a: n for a, n in (*m.PIC_RANGES, m.PIT_RANGE, m.SPEAKER_RANGE, m.IOAPIC_RANGE)}[edge]
        addr = self._around(edge, span, length)
        flags = uapi.KVM_IOFD_FLAG_PIO if pio else 0
        return Case(m.IOFD, addr, length, self._fd(1.0), flags)

    def _plan_devices(self) -> None:
        """After a VM reset: iofds around the device addresses, the
        irqchip and the PIT (each sometimes twice), then more iofds."""
        rng = self.rng
        self._queue.extend(self._device_iofd() for _ in range(rng.randint(0, 3)))
        self._queue.extend(Case(m.IRQCHIP) for _ in range(rng.choice((1, 1, 2))))
        speaker = m.PIT_SPEAKER_DUMMY if rng.random() < 0.5 else 0
        self._queue.extend(Case(m.PIT, flags=speaker) for _ in range(rng.choice((0, 1, 1, 2))))
        self._queue.extend(self._device_iofd() for _ in range(rng.randint(0, 4)))

    def _coalesced(self) -> Case:
        """Register a zone near something, or unregister one exactly; only
        cases whose answer api.rst gives (Model.zone_documented)."""
        rng = self.rng
        zones = [z for z in self.model.fixed if z.kind == "coalesced"]
        if zones and rng.random() < 0.4:
            z = rng.choice(zones)
            flags = uapi.KVM_IOFD_FLAG_DEASSIGN | (uapi.KVM_IOFD_FLAG_PIO if z.pio else 0)
            return Case(m.COALESCED, z.addr, z.length, flags=flags)
        for _ in range(20):
            pio = rng.random() < 0.5
            size = rng.choice(COALESCED_SIZES)
            case = Case(
                m.COALESCED,
                self._near(pio, max(size, 1)),
                size,
                flags=uapi.KVM_IOFD_FLAG_PIO if pio else 0,
            )
            # A zone over DONE_PORT would swallow the probes' final write.
            done = pio and m.meet(case.addr, max(size, 1), m.DONE_PORT, 4)
            if self.model.zone_documented(case) and not done:
                return case
        return Case(m.BADSIZE, size=0)

    def _free_bytes(self, pio: bool, lo: int, hi: int, stride: int, want: int) -> list[int]:
        """Up to ``want`` addresses in [lo, hi), ``stride`` apart, whose byte
        no device on the bus occupies (skipping over devices)."""
        taken = sorted((a, a + (n or 1)) for a, n, _ in self.model.buses[pio] if a < hi and a + (n or 1) > lo)
        out: list[int] = []
        addr, i = lo, 0
        while addr < hi and len(out) < want:
            while i < len(taken) and taken[i][1] <= addr:
                i += 1
            if i < len(taken) and taken[i][0] <= addr:
                addr = taken[i][1]
                continue
            out.append(addr)
            addr += stride
        return out

    def _plan_fill(self, pio: bool) -> None:
        """Queue 1-byte assigns at free addresses until the bus holds
        ``bus_limit`` counted devices, then FILL_PAST more (ENOSPC)."""
        rng = self.rng
        model = self.model
        self._fill_pio = pio
        room = max(0, model.bus_limit - model.bus_devices(pio))
        stride = rng.choice(FILL_STRIDES)
        lo = rng.randrange(*FILL_REGIONS[pio])
        flags = uapi.KVM_IOFD_FLAG_PIO if pio else 0
        slots = len(model.slot_ctx)
        for addr in self._free_bytes(pio, lo, FILL_END[pio], stride, room + FILL_PAST):
            fd = FdRef(m.EVENTFD, rng.randrange(slots), 1 if rng.random() < 0.2 else 0)
            if rng.random() < BUFFERED:  # 1-byte registers in a shared buffer
                ref = m.BufRef(m.POOL, rng.randrange(m.BUF_SLOTS), rng.randrange(m.BUF_SIZE))
                self._queue.append(Case(m.IOFD, addr, 1, fd, flags | uapi.KVM_IOFD_FLAG_BUFFER, buffer=ref))
            else:
                self._queue.append(Case(m.IOFD, addr, 1, fd, flags))

    def _set_mood(self, mood: str) -> None:
        self.mood = mood
        if mood == "fill":
            self._mood_left = self.rng.randint(50, 200)  # after a bulk fill: near the limit
            # Always at the start, then now and then: a fill is a thousand cases.
            if self.iofd and (not self._filled or self.rng.random() < FILL_CHANCE):
                self._filled = True
                self._plan_fill(self.rng.random() < 0.5)
        else:
            self._mood_left = self.rng.randint(50, 400)

    # -- the case kinds ---------------------------------------------------------------------
    def _iofd_assign(self) -> Case:
        rng = self.rng
        pio = rng.random() < 0.5
        length = self._small_len() if rng.random() < 0.9 else rng.randint(1, 8)
        if self.mood == "fill":  # small ranges, mostly on the bus that was filled
            pio = self._fill_pio if rng.random() < 0.7 else not self._fill_pio
            length = rng.randint(1, 8)
        addr = (
            self._near(pio, length)
            if self.mood != "fill" or rng.random() < 0.2
            else self._window_addr(pio, length)
        )
        flags = self._flags(
            pio, False, m.IOFD_VALID_FLAGS, uapi.KVM_IOFD_FLAG_PIO, uapi.KVM_IOFD_FLAG_DEASSIGN
        )
        flag, ref = self._buffer(length)
        if ref is not None and not flag:  # a stray buffer: the flag must be clear
            flags &= ~uapi.KVM_IOFD_FLAG_BUFFER
        return Case(m.IOFD, addr, length, self._fd(0.93), flags | flag, self._pad(), buffer=ref)

    def _deassign_buffer(self, flags: int, length: int) -> tuple[int, m.BufRef | None]:
        """Deassign does not compare the buffer: sometimes send one anyway,
        with the flag (ignored) or without it (EINVAL, api.rst error 5)."""
        r = self.rng.random()
        if r < 0.15:
            return flags | uapi.KVM_IOFD_FLAG_BUFFER, self._any_buffer(length)
        if r < 0.15 + STRAY_BUFFER:
            return flags & ~uapi.KVM_IOFD_FLAG_BUFFER, self._any_buffer(length)
        return flags, None

    def _iofd_deassign(self) -> Case:
        rng = self.rng
        live = self.model.claimable() or self.model.iofds
        if not live or rng.random() < 0.1:
            pio = rng.random() < 0.5
            length = self._small_len()
            flags = self._flags(
                pio, True, m.IOFD_VALID_FLAGS, uapi.KVM_IOFD_FLAG_PIO, uapi.KVM_IOFD_FLAG_DEASSIGN
            )
            flags, ref = self._deassign_buffer(flags, length)
            return Case(m.IOFD, self._near(pio, length), length, self._fd(), flags, self._pad(), buffer=ref)
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
        flags, ref = self._deassign_buffer(flags, length)
        return Case(m.IOFD, addr, length, fd, flags, self._pad(), buffer=ref)

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
        ref = None
        r = rng.random()
        if r < 0.25:  # with the flag: anything from a good buffer to a kernel address
            flags |= uapi.KVM_IOFD_FLAG_BUFFER
            ok = 0 < length <= m.S32_MAX and rng.random() < 0.5
            ref = self._good_buffer(length) if ok else self._bad_buffer(max(length, 1))
        elif r < 0.35:  # a raw value, with or without the flag
            ref = m.BufRef(m.RAW, raw=rng.choice((1, self._u64(), *KERNEL_BUFFERS)))
            if flags & uapi.KVM_IOFD_FLAG_BUFFER and self.model.buffer_access_ok(ref, length):
                ref = self._bad_buffer(max(length, 1))  # a random user address may be mapped
        return Case(m.IOFD, addr, length, self._fd(0.6), flags, self._pad(), buffer=ref)

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
        kinds = [k for k in SPECIAL_WEIGHTS if self.iofd or k not in (m.EFAULT_OP, m.BADSIZE, m.PROTECT)]
        if self.mood == "fill":  # a reset would undo the filling
            kinds.remove(m.RESET_VM)
        if not self.model.irqchip_documented():
            kinds.remove(m.IRQCHIP)
        if not self.model.pit_documented(False):
            kinds.remove(m.PIT)
        op = rng.choices(kinds, [SPECIAL_WEIGHTS[k] for k in kinds])[0]
        if op == m.RECREATE:
            return Case(op, slot=rng.randrange(len(self.model.slot_ctx)))
        if op == m.PROTECT:
            return Case(op, slot=rng.randrange(m.BUF_SLOTS), writable=rng.random() < WRITABLE)
        if op == m.BADSIZE:
            return Case(op, size=rng.choice((0, 24, 28, 36, 64)))
        if op == m.COALESCED:
            return self._coalesced()
        if op == m.RESET_VM and self.iofd and rng.random() < DEVICE_SEQUENCE:
            self._plan_devices()
        return Case(op)

    def probe(self) -> Case:
        """4 to 12 accesses, most at the edges of what is registered."""
        rng = self.rng
        accesses: list[Access] = []
        tries = 0
        want = rng.randint(4, 12)
        while len(accesses) < want and tries < 200:
            tries += 1
            acc = self._probe_access()
            if _reachable(acc) and self.model.probe_safe(acc):
                accesses.append(acc)
        return Case(m.PROBE, accesses=tuple(accesses))

    def _probe_access(self) -> Access:
        rng = self.rng
        model = self.model
        pio = rng.random() < 0.5
        size = rng.choice((1, 2, 4))
        write = rng.random() < 0.7
        if not pio and rng.random() < WIDE_PROBES:
            size, write = m.WIDE_SIZE, True
            roomy = [r for r in model.iofds if not r.pio and r.length >= size]
            if roomy and rng.random() < 0.5:  # inside a range that can hold it
                t = rng.choice(roomy)
                return Access(pio, t.addr + rng.randrange(min(t.length - size, 0x100) + 1), size, write)
        targets = [(a, n or 1) for a, n, d in model.buses[pio] if not isinstance(d, m.Fixed)]
        buffered = [r for r in model.iofds if r.pio == pio and r.buffer is not None]
        if not pio and rng.random() < CROSSING_PROBES:  # across a page boundary
            spanning = [a for a, n in targets if a // PAGE != (a + n - 1) // PAGE]
            if spanning and rng.random() < 0.6:
                boundary = (rng.choice(spanning) // PAGE + 1) * PAGE
            else:
                boundary = rng.randrange(MMIO_WINDOW[0] + PAGE, MMIO_WINDOW[1], PAGE)
            size = max(size, 2)
            return Access(pio, boundary - rng.randint(1, size - 1), size, write)
        if buffered and rng.random() < BUFFER_PROBES:  # inside a buffered range
            t = rng.choice(buffered)
            sizes = [n for n in (1, 2, 4, m.WIDE_SIZE if write and not pio else 0) if 0 < n <= t.length]
            size = rng.choice(sizes)
            addr = t.addr + rng.randrange(min(t.length - size, 0x10000) + 1)
            return Access(pio, addr, size, write if size == m.WIDE_SIZE else rng.random() < 0.55)
        if targets and rng.random() < 0.8:
            a, span = rng.choice(targets)
            offsets = (-size, -1, 0, 1, span - size, span - 1, span, rng.randrange(span))
            return Access(pio, a + rng.choice(offsets), size, write)
        if pio:
            return Access(pio, rng.randrange(0x10000), size, write)
        return Access(pio, rng.randrange(*MMIO_WINDOW), size, write)

    def _probe_now(self, index: int) -> bool:
        """Is case ``index`` a probe?  Not while an in-kernel irqchip exists
        and something claims DONE_PORT: the program's final HLT would then
        block in the kernel instead of exiting."""
        if not self.probes or index % self.probe_every != self.probe_every - 1:
            return False
        done = m.Access(True, m.DONE_PORT, 4, True)
        return not (self.model.irqchip and self.model.claimant(done, 0) != ("exit", -1))

    def _documented(self, case: Case) -> bool:
        """A queued case whose answer api.rst still gives (a probe in
        between may have made a vCPU, so a queued irqchip would not be)."""
        if case.op == m.IRQCHIP:
            return self.model.irqchip_documented()
        if case.op == m.PIT:
            return self.model.pit_documented(bool(case.flags & m.PIT_SPEAKER_DUMMY))
        return True

    # -- the sequence ---------------------------------------------------------------------
    def next_case(self, index: int) -> Case:
        rng = self.rng
        if self._probe_now(index):
            return self.probe()
        while self._queue:
            case = self._queue.popleft()
            if self._documented(case):
                return case
        if self._mood_left <= 0:
            self._set_mood(rng.choice(MOODS))
            if self._queue:
                return self._queue.popleft()
        self._mood_left -= 1
        if self.mood == "drain" and not self.model.iofds:
            self._mood_left = 0
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
    if acc.size == m.WIDE_SIZE:
        return acc.write and lo <= acc.addr and acc.addr + acc.size <= hi
    return lo <= acc.addr and acc.addr + acc.size <= hi
