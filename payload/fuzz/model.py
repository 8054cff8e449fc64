"""What KVM_IOFD (and KVM_IOEVENTFD next to it) must answer, in pure Python.

The model is written from the documentation, never from the C or from
observed behaviour: Documentation/virt/kvm/api.rst of series v2, section
4.146 KVM_IOFD (its numbered error list and its "Accesses", "Buffer" and
"Overlaps" paragraphs), 8.48 KVM_CAP_IOFD, and the EEXIST sentences v2 adds
to 4.24 KVM_CREATE_IRQCHIP, 4.59 KVM_IOEVENTFD, 4.71 KVM_CREATE_PIT2 and
4.116 KVM_REGISTER_COALESCED_MMIO.  Every errno the model returns names the
api.rst item it comes from (:data:`API_ITEMS`, shown in mismatch reports).
api.rst 4.146 numbers its errors, and lets the kernel return any one of
those that apply when several do: the model answers the first in the
order below and accepts the others (``Model.allowed``):

1. EFAULT, the parameter could not be read (item 1): its own case kind.
2. The arguments (items 2-8; item 3 never applies on x86): unknown flag
   bits (2), non-zero pad (4), ``buffer`` non-zero without
   KVM_IOFD_FLAG_BUFFER (5), ``len`` 0 or above 2**31 - 1 (6), ``addr +
   len`` not fitting in 64 bits, so a range that ends exactly at 2**64 is
   refused too (7), a PIO range ending past port 0xffff (8): all EINVAL,
   before the fd is looked at, on assign and deassign alike.
3. The fd (item 9): EBADF if ``fd`` is not an open file (negative, closed,
   past the fd table), EINVAL if it is open but not an eventfd.
4. Assign (items 10-15; the ENOMEM items 11, 12 and 15 are not modelled):
   EFAULT if KVM_IOFD_FLAG_BUFFER is set and ``[buffer, buffer + len)`` is
   not a range of user addresses (10); whether it is mapped is not checked.
   Then EEXIST if the range overlaps any device already on the same bus
   (13): another iofd, an ioeventfd or a coalesced zone (a zero-length one
   occupies its address), the PIC, IOAPIC or PIT.  Then ENOSPC if "the bus
   already holds as many devices as it can" (14); 8.48 says how many: at
   most NR_IOBUS_DEVS (1000) devices other than ioeventfds, per bus (PIO
   and MMIO are separate buses).  There is no per-VM limit, and
   KVM_CAP_IOFD is a presence flag (1), not a count.
5. Deassign (item 10 of its own list): ENOENT unless an iofd matches addr,
   len, the eventfd (the context behind the fd, not the fd number) and the
   bus.  KVM_IOFD_FLAG_BUFFER and ``buffer`` are not compared, so a
   deassign with a kernel address as its buffer is not EFAULT.

"A range of user addresses" is the architecture's access_ok(), which
api.rst does not spell out: on x86-64, ``buffer + len`` (without wrapping
past 2**64) must not exceed USER_PTR_MAX, which is TASK_SIZE_MAX: 2**47 -
4096 with 4-level paging, 2**56 - 4096 with 5-level paging.  The model
takes it as ``user_max`` (KvmSide finds out which one the kernel uses).

Other devices ("Overlaps": registering any device whose range overlaps an
iofd fails with EEXIST, and the device registered first keeps working):

* KVM_IOEVENTFD: its own argument checks and collisions are mainline's
  (api.rst 4.59 does not number them); v2 adds EEXIST when its address
  (one byte for len 0) or range overlaps an iofd.  Ioeventfds may overlap
  each other and in-kernel devices, as in mainline.
* KVM_REGISTER_COALESCED_MMIO (4.116): EEXIST if the zone (size 0: its
  address) overlaps an iofd on its bus.  Zones count against the bus limit
  (8.48: every device but ioeventfds).
* KVM_CREATE_IRQCHIP (4.24): EEXIST, creating nothing, if an irqchip
  exists or the PIC ports 0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1 or the IOAPIC's
  0xfec00000-0xfec000ff overlap an iofd.  It sets up *future* vCPUs, so
  the generator only creates it in a VM without a vCPU.
* KVM_CREATE_PIT2 (4.71): only valid after KVM_CREATE_IRQCHIP (the
  generator only calls it then); EEXIST, creating nothing, if a PIT exists
  or its ports 0x40-0x43 (with KVM_PIT_SPEAKER_DUMMY also 0x61-0x64)
  overlap an iofd.

Where api.rst gives no errno or no precedence (a coalesced zone or an
in-kernel device on a full bus, a zone overlapping another zone, an
irqchip after a vCPU), the generator does not go, and the model raises
ValueError if asked.

Buffers are referred to by meaning (:class:`BufRef`), like fds, because
their addresses differ between processes: BUF_SLOTS buffers of BUF_SIZE
bytes that KvmSide maps once per run (the last one read-only), a large
PROT_NONE reservation (HOLE), or a raw number.  The model keeps the
contents of every pool buffer, starting from :func:`initial_buffer`; VM
resets do not touch them ("KVM never clears or changes the buffer").  A
raw number that passes access_ok is assumed to point at nothing: the
generator draws such numbers only from [0, RAW_LOW_END) and from the top
TOP_SPAN bytes of user space, and KvmSide checks that nothing is mapped
where a probe can reach through them.

``probe`` predicts what a guest program does with the registrations, per
"Accesses" and "Buffer": a port access is one bus access; an MMIO access is
split at a page boundary into parts, each part cut into pieces of at most 8
bytes, the pieces of a part offered in order until one is not claimed, and
that piece and the rest of its part exit as KVM_EXIT_MMIO of at most 8 bytes
each, after both parts have been offered.  A bus access goes to the one
device that accepts it: an iofd if it lies entirely inside the range and,
with a buffer, the buffer bytes can be accessed (a write needs them
writable); an ioeventfd if it is a write at its address with its length (any
length for len 0) and datamatch.  Every device that matches is found,
whatever the order it was registered in: that is patch 1's invariant ("Find
every matching device on an I/O bus"), so the bus is modelled as a set, and
a kernel that loses an access to the registration order disagrees.
"""

from __future__ import annotations

import errno
import functools
from collections import Counter
from dataclasses import dataclass, field

from payload.kvm import uapi

U64_MASK = (1 << 64) - 1
U32_MASK = (1 << 32) - 1
S32_MAX = (1 << 31) - 1
PIO_LIMIT = 0x10000
"""A PIO iofd must end at or before this port (KVM_IOFD_PIO_LIMIT)."""
NR_IOBUS_DEVS = 1000
"""Devices other than ioeventfds that one io bus holds; the next
registration on that bus is ENOSPC (api.rst 8.48 KVM_CAP_IOFD)."""

IOFD_VALID_FLAGS = uapi.KVM_IOFD_FLAG_DEASSIGN | uapi.KVM_IOFD_FLAG_PIO | uapi.KVM_IOFD_FLAG_BUFFER
PAD_LEN = 4
"""Bytes of kvm_iofd.pad in v2 (the other 8 of v1's 12 became ``buffer``)."""
IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY = 1 << 3
IOEVENTFD_FLAG_FAST_MMIO = 1 << 4  # kvm_ioeventfd_flag_nr_fast_mmio: accepted, ignored
IOEVENTFD_VALID_FLAGS = (IOEVENTFD_FLAG_FAST_MMIO << 1) - 1
IOEVENTFD_LENGTHS = (0, 1, 2, 4, 8)

# --- buffers -----------------------------------------------------------------------
PAGE = 0x1000
USER_PTR_MAX_4LEVEL = (1 << 47) - PAGE
USER_PTR_MAX_5LEVEL = (1 << 56) - PAGE
"""x86-64 access_ok() accepts [buffer, buffer + len) iff buffer + len does not
wrap and is at most USER_PTR_MAX (= TASK_SIZE_MAX), one of these two."""
BUF_SLOTS = 3
"""Buffers in the pool; the last one starts read-only (writes to it fault),
and PROTECT cases change any buffer's protection during a run."""
READONLY_SLOT = BUF_SLOTS - 1
BUF_SIZE = 0x11000
"""Bytes per pool buffer: a 0x10000-byte range fits with room to move."""
HOLE_SIZE = (1 << 31) + 0x20000
"""A PROT_NONE reservation: any iofd length fits, every access faults."""
PROBE_REACH = 0x10004
"""No probe access reaches further than this into a range (guest addresses
and ports are below 0x10000, accesses at most 4 bytes)."""
RAW_LOW_END = 0x1000
"""Raw user buffers the generator uses start below this."""
TOP_SPAN = PAGE
"""Raw user buffers near the top end in the last TOP_SPAN bytes of user space."""

POOL = "pool"  # BufRef.slot of the pool, at BufRef.offset
HOLE = "hole"  # the PROT_NONE reservation, at BufRef.offset
RAW = "raw"  # BufRef.raw, whatever it is


@dataclass(frozen=True)
class BufRef:
    """A ``buffer`` value by meaning, so a case replays in any process."""

    kind: str
    slot: int = 0
    offset: int = 0
    raw: int = 0

    def __str__(self) -> str:
        if self.kind == POOL:
            return f"buf{self.slot}+{self.offset:#x}"
        if self.kind == HOLE:
            return f"hole+{self.offset:#x}"
        return f"{self.raw:#x}"


@functools.cache
def initial_buffer(slot: int) -> bytes:
    """What pool buffer ``slot`` holds when a run starts: no zeros, so a
    read served from it differs from a read of an iofd without a buffer."""
    return bytes(((slot * 0x35 + i * 0x1F + (i >> 8)) % 255) + 1 for i in range(BUF_SIZE))


# --- file descriptors ----------------------------------------------------------
EVENTFD = "eventfd"
"""An eventfd of the pool: ``slot`` picks the eventfd, ``alias`` its fd (0
the original, 1 a dup of it: same eventfd, another number)."""
CLOSED = "closed"  # a number that is not open
NEGATIVE = "negative"  # FdRef.number < 0
HUGE = "huge"  # FdRef.number past any fd table
PIPE = "pipe"  # open, not an eventfd
DEVNULL = "devnull"
VM_FD = "vm"  # the VM's own fd
OTHER_VM = "other_vm"  # another VM's fd
KVM_DEV = "kvm"  # /dev/kvm

EBADF_KINDS = frozenset({CLOSED, NEGATIVE, HUGE})
NOT_EVENTFD_KINDS = frozenset({PIPE, DEVNULL, VM_FD, OTHER_VM, KVM_DEV})


@dataclass(frozen=True)
class FdRef:
    """A file descriptor by meaning, so a case replays in any process."""

    kind: str
    slot: int = 0
    alias: int = 0
    number: int = 0  # the raw value, for NEGATIVE and HUGE

    def __str__(self) -> str:
        if self.kind == EVENTFD:
            return f"efd{self.slot}" + ("'" if self.alias else "")
        if self.kind in (NEGATIVE, HUGE):
            return f"{self.kind}({self.number})"
        return self.kind


# --- operations -----------------------------------------------------------------
IOFD = "iofd"
IOEVENTFD = "ioeventfd"
EFAULT_OP = "efault"  # KVM_IOFD with an unmapped argument pointer
BADSIZE = "badsize"  # KVM_IOFD's number with another struct size encoded
PROBE = "probe"  # run a guest program, compare exits and signals
RECREATE = "recreate"  # close an eventfd of the pool (both fds), open a new one
RESET_VM = "reset_vm"  # destroy the VM with whatever it holds, make a new one
PROTECT = "protect"  # mprotect pool buffer ``slot`` read-only or (``writable``) read-write
COALESCED = "coalesced"  # KVM_(UN)REGISTER_COALESCED_MMIO; flags as KVM_IOFD's PIO and DEASSIGN
IRQCHIP = "irqchip"  # KVM_CREATE_IRQCHIP
PIT = "pit"  # KVM_CREATE_PIT2; flags: KVM_PIT_SPEAKER_DUMMY
IOCTL_OPS = frozenset({IOFD, IOEVENTFD, EFAULT_OP, BADSIZE, COALESCED, IRQCHIP, PIT})
"""Cases that are one ioctl whose errno is compared."""

PIC_RANGES = ((0x20, 2), (0xA0, 2), (0x4D0, 2))
"""PIO ranges of the in-kernel PIC (api.rst 4.24: 0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1)."""
IOAPIC_RANGE = (0xFEC00000, 0x100)
"""MMIO range of the in-kernel IOAPIC (api.rst 4.24: 0xfec00000-0xfec000ff)."""
PIT_RANGE = (0x40, 4)
SPEAKER_RANGE = (0x61, 4)
"""PIO ranges of the in-kernel PIT (api.rst 4.71: 0x40-0x43; with
KVM_PIT_SPEAKER_DUMMY also 0x61-0x64)."""
PIT_SPEAKER_DUMMY = uapi.KVM_PIT_SPEAKER_DUMMY

MMIO_PIECE = 8
"""api.rst 4.146 "Accesses": x86 hands MMIO to the bus in pieces of at most 8 bytes."""
WIDE_SIZE = 16
"""A probe's ``movdqu`` store: the one guest access wider than a piece."""
WIDE_DATA = bytes(0xA0 + i for i in range(WIDE_SIZE))
"""What a 16-byte probe store writes (every byte different)."""

API_ITEMS = {
    "iofd-1": "api.rst 4.146 KVM_IOFD error 1: EFAULT, the parameter could not be read",
    "iofd-2": "api.rst 4.146 KVM_IOFD error 2: EINVAL, flags has an unknown bit",
    "iofd-4": "api.rst 4.146 KVM_IOFD error 4: EINVAL, pad is not all zeros",
    "iofd-5": "api.rst 4.146 KVM_IOFD error 5: EINVAL, buffer non-zero without KVM_IOFD_FLAG_BUFFER",
    "iofd-6": "api.rst 4.146 KVM_IOFD error 6: EINVAL, len is 0 or above 2^31 - 1",
    "iofd-7": "api.rst 4.146 KVM_IOFD error 7: EINVAL, addr + len does not fit in 64 bits",
    "iofd-8": "api.rst 4.146 KVM_IOFD error 8: EINVAL, PIO range ends past port 0xffff",
    "iofd-9": "api.rst 4.146 KVM_IOFD error 9: EBADF, fd not open; EINVAL, open but not an eventfd",
    "iofd-assign-10": "api.rst 4.146 KVM_IOFD assign error 10: EFAULT, buffer is not user addresses",
    "iofd-assign-13": "api.rst 4.146 KVM_IOFD assign error 13: EEXIST, the range overlaps a device",
    "iofd-assign-14": "api.rst 4.146 KVM_IOFD assign error 14 and 8.48: ENOSPC, the bus holds 1000 devices",
    "iofd-assign-ok": "api.rst 4.146 KVM_IOFD: no error applies, the range is claimed",
    "iofd-deassign-10": "api.rst 4.146 KVM_IOFD deassign error 10: ENOENT, no iofd matches",
    "iofd-deassign-ok": "api.rst 4.146 KVM_IOFD deassign: the matching iofd is removed",
    "ioeventfd-iofd": "api.rst 4.59 KVM_IOEVENTFD: EEXIST, its address or range overlaps an iofd",
    "ioeventfd-mainline": "KVM_IOEVENTFD as in mainline 7.3 (api.rst 4.59 numbers no errors)",
    "ioeventfd-limit": "api.rst 8.48: ENOSPC, the bus holds 1000 devices other than ioeventfds",
    "badsize": "ioctl(2): ENOTTY, an ioctl number KVM does not know (another struct size)",
    "coalesced-iofd": "api.rst 4.116 and 4.146 Overlaps: EEXIST, the coalesced zone overlaps an iofd",
    "coalesced-limit": "api.rst 8.48: ENOSPC, the bus holds 1000 devices other than ioeventfds",
    "coalesced-ok": "api.rst 4.116: the coalesced zone is registered (or the exact zone removed)",
    "irqchip-exists": "api.rst 4.24 KVM_CREATE_IRQCHIP: EEXIST, an in-kernel irqchip already exists",
    "irqchip-iofd": "api.rst 4.24 KVM_CREATE_IRQCHIP: EEXIST, PIC ports or IOAPIC range overlap an iofd",
    "irqchip-ok": "api.rst 4.24 KVM_CREATE_IRQCHIP: PIC and IOAPIC created",
    "pit-exists": "api.rst 4.71 KVM_CREATE_PIT2: EEXIST, a PIT already exists",
    "pit-iofd": "api.rst 4.71 KVM_CREATE_PIT2: EEXIST, PIT (or dummy speaker) ports overlap an iofd",
    "pit-ok": "api.rst 4.71 KVM_CREATE_PIT2: PIT created",
}
"""The documentation behind each answer of :meth:`Model.apply` (``Model.rule``)."""

DONE_PORT = 0x00F4
PATTERN = 0x12345678


@dataclass(frozen=True)
class Access:
    """One guest access of a probe (PIO port or MMIO address)."""

    pio: bool
    addr: int
    size: int
    write: bool

    def __str__(self) -> str:
        return f"{'out' if self.write else 'in'}{self.size} {'pio' if self.pio else 'mmio'}:{self.addr:#x}"

    @property
    def data(self) -> bytes:
        """The bytes a write carries: PATTERN's low bytes (EAX), or
        WIDE_DATA for the 16-byte store."""
        if self.size == WIDE_SIZE:
            return WIDE_DATA
        return (PATTERN & mask(self.size)).to_bytes(self.size, "little")

    def pieces(self) -> list[list[Access]]:
        """The bus accesses it becomes, per api.rst 4.146 "Accesses": a port
        access is one; an MMIO access is split at page boundaries into parts,
        and each part cut into pieces of at most 8 bytes from its start."""
        if self.pio:
            return [[self]]
        parts = []
        addr, end = self.addr, self.addr + self.size
        while addr < end:
            part_end = min(end, (addr // PAGE + 1) * PAGE)
            parts.append(
                [
                    Access(False, a, min(MMIO_PIECE, part_end - a), self.write)
                    for a in range(addr, part_end, MMIO_PIECE)
                ]
            )
            addr = part_end
        return parts

    @property
    def page_crossing(self) -> bool:
        return not self.pio and self.addr // PAGE != (self.addr + self.size - 1) // PAGE


@dataclass(frozen=True)
class Case:
    """One step of a fuzz run; everything needed to replay it."""

    op: str
    addr: int = 0
    length: int = 0
    fd: FdRef | None = None
    flags: int = 0
    pad: bytes = bytes(PAD_LEN)
    buffer: BufRef | None = None
    """kvm_iofd.buffer; None is 0."""
    datamatch: int = 0
    slot: int = 0
    size: int = 0  # BADSIZE: the struct size encoded in the ioctl number
    writable: bool = False  # PROTECT: make the buffer writable (else read-only)
    accesses: tuple[Access, ...] = ()

    @property
    def pio(self) -> bool:
        if self.op == PIT:
            return True
        if self.op == IOEVENTFD:
            return bool(self.flags & uapi.KVM_IOEVENTFD_FLAG_PIO)
        return bool(self.flags & uapi.KVM_IOFD_FLAG_PIO)

    @property
    def deassign(self) -> bool:
        if self.op == IOEVENTFD:
            return bool(self.flags & uapi.KVM_IOEVENTFD_FLAG_DEASSIGN)
        return bool(self.flags & uapi.KVM_IOFD_FLAG_DEASSIGN)

    @property
    def buffered(self) -> bool:
        """KVM_IOFD with KVM_IOFD_FLAG_BUFFER."""
        return self.op == IOFD and bool(self.flags & uapi.KVM_IOFD_FLAG_BUFFER)

    def __str__(self) -> str:
        if self.op in (IOFD, IOEVENTFD):
            text = f"{self.op}(addr={self.addr:#x}, len={self.length:#x}, fd={self.fd}, flags={self.flags:#x}"
            if any(self.pad):
                text += f", pad={self.pad.hex()}"
            if self.buffer is not None:
                text += f", buffer={self.buffer}"
            if self.op == IOEVENTFD and self.flags & uapi.KVM_IOEVENTFD_FLAG_DATAMATCH:
                text += f", datamatch={self.datamatch:#x}"
            return text + ")"
        if self.op == BADSIZE:
            return f"badsize(size={self.size})"
        if self.op == RECREATE:
            return f"recreate(efd{self.slot})"
        if self.op == PROTECT:
            return f"protect(buf{self.slot}, {'read-write' if self.writable else 'read-only'})"
        if self.op == PROBE:
            return "probe(" + ", ".join(map(str, self.accesses)) + ")"
        if self.op == COALESCED:
            what = "unregister" if self.deassign else "register"
            bus = "pio" if self.pio else "mmio"
            return f"coalesced_{what}({bus}, addr={self.addr:#x}, size={self.length:#x})"
        if self.op == PIT:
            return "create_pit2(speaker_dummy)" if self.flags & PIT_SPEAKER_DUMMY else "create_pit2()"
        if self.op == IRQCHIP:
            return "create_irqchip()"
        return self.op

    @property
    def operation(self) -> str:
        """The operation for coverage: "iofd assign", "coalesced unregister", ..."""
        if self.op in (IOFD, IOEVENTFD):
            return f"{self.op} {'deassign' if self.deassign else 'assign'}"
        if self.op == COALESCED:
            return f"coalesced {'unregister' if self.deassign else 'register'}"
        return self.op


# --- registrations ---------------------------------------------------------------
@dataclass(frozen=True)
class Iofd:
    pio: bool
    addr: int
    length: int
    ctx: int
    buffer: BufRef | None = None
    """None: registered without KVM_IOFD_FLAG_BUFFER."""

    @property
    def end(self) -> int:
        return self.addr + self.length

    def __str__(self) -> str:
        text = f"iofd {'pio' if self.pio else 'mmio'} [{self.addr:#x}, {self.end:#x}) ctx{self.ctx}"
        return text + (f" buffer {self.buffer}" if self.buffer is not None else "")


@dataclass(frozen=True)
class Ioeventfd:
    pio: bool
    addr: int
    length: int
    ctx: int
    datamatch: int | None  # None: wildcard

    @property
    def span(self) -> int:
        """Bytes the io bus and the iofd overlap check treat it as covering."""
        return self.length or 1

    def __str__(self) -> str:
        match = "*" if self.datamatch is None else f"{self.datamatch:#x}"
        return (
            f"ioeventfd {'pio' if self.pio else 'mmio'} {self.addr:#x} len {self.length} "
            f"ctx{self.ctx} data {match}"
        )


@dataclass(frozen=True)
class Fixed:
    """A device that is neither an iofd nor an ioeventfd: a coalesced zone
    or part of an in-kernel device model (PIC, IOAPIC, PIT, speaker)."""

    kind: str  # "coalesced", "pic", "ioapic", "pit", "speaker"
    pio: bool
    addr: int
    length: int

    @property
    def span(self) -> int:
        """Bytes it occupies: a zero-length zone occupies its address."""
        return self.length or 1

    def __str__(self) -> str:
        return f"{self.kind} {'pio' if self.pio else 'mmio'} [{self.addr:#x}, {self.addr + self.span:#x})"


Device = Iofd | Ioeventfd | Fixed
BusEntry = tuple[int, int, Device]
"""(addr, len, device) of one device on a bus."""


def meet(a: int, alen: int, b: int, blen: int) -> bool:
    """Do [a, a + alen) and [b, b + blen) share a byte?"""
    return a <= b + blen - 1 and b <= a + alen - 1


def mask(size: int) -> int:
    return (1 << (8 * size)) - 1


@dataclass
class ProbeExpect:
    """What a probe program must do, per the model."""

    exits: list[tuple[str, int, int, bool, int]] = field(default_factory=list)
    """(kind, addr, size, is_write, data) of each access that reaches the
    VMM's handler, in order (the final DONE_PORT write is not one)."""
    signals: Counter[int] = field(default_factory=Counter)
    """eventfd context -> times signalled."""
    result: int = 0
    """OR of every value read, as stored at RESULT_ADDR."""
    end: str = "done"
    """"done" if the DONE_PORT write exits, "hlt" if something claims it."""
    buffers: dict[int, bytes] = field(default_factory=dict)
    """Pool slot -> the buffer's contents after the program."""
    stores: int = 0
    """Claimed writes stored in a buffer."""
    loads: int = 0
    """Claimed reads served from a buffer."""
    faults: int = 0
    """Accesses inside a buffered iofd that exited because its buffer could
    not be accessed."""

    @property
    def kvm_exits(self) -> int:
        """KVM_RUN returns: each exiting access plus the final DONE or HLT."""
        return len(self.exits) + 1


class Model:
    """Registrations of one VM plus the pool's eventfd identities."""

    def __init__(
        self, slots: int, *, bus_limit: int = NR_IOBUS_DEVS, user_max: int = USER_PTR_MAX_4LEVEL
    ) -> None:
        if bus_limit <= 0 or slots <= 0:
            raise ValueError("bus_limit and slots must be positive")
        self.bus_limit = bus_limit
        """Devices other than ioeventfds per bus; only tests change it."""
        self.user_max = user_max
        """USER_PTR_MAX of the kernel under test: the end of access_ok()'s range."""
        self.memory = {slot: bytearray(initial_buffer(slot)) for slot in range(BUF_SLOTS)}
        """The pool buffers' contents, as the kernel must have left them."""
        self.writable = [slot != READONLY_SLOT for slot in range(BUF_SLOTS)]
        """Per pool buffer: can it be written (else it is read-only)?"""
        self.slot_ctx = list(range(slots))
        """Eventfd context behind each pool slot; RECREATE gives a fresh one."""
        self._next_ctx = slots
        self.iofds: list[Iofd] = []
        self.ioeventfds: list[Ioeventfd] = []
        self.fixed: list[Fixed] = []
        """Coalesced zones and in-kernel device ranges."""
        self.irqchip = False
        self.pit = False
        self.vcpu = False
        """Has the VM a vCPU (KvmSide makes one at the first probe)?"""
        self.buses: dict[bool, list[BusEntry]] = {True: [], False: []}
        """The devices on the PIO (True) and MMIO (False) bus.  The order
        means nothing: every matching device is found (patch 1's invariant)."""
        self.rule = ""
        """The API_ITEMS key behind the latest :meth:`apply` answer."""
        self.allowed: set[int] = set()
        """Other errnos that also apply to the latest :meth:`apply` case."""

    # -- state changes that are not ioctls ------------------------------------------
    def snapshot(self) -> tuple[object, ...]:
        """The registrations, for :meth:`restore` (a mismatch report shows
        the state the failing case met)."""
        buses = {pio: list(bus) for pio, bus in self.buses.items()}
        return (list(self.iofds), list(self.ioeventfds), list(self.fixed), buses, self.irqchip, self.pit)

    def restore(self, saved: tuple[object, ...]) -> None:
        iofds, ioeventfds, fixed, buses, irqchip, pit = saved
        self.iofds, self.ioeventfds, self.fixed = iofds, ioeventfds, fixed  # type: ignore[assignment]
        self.buses, self.irqchip, self.pit = buses, irqchip, pit  # type: ignore[assignment]

    def reset_vm(self) -> None:
        self.iofds.clear()
        self.ioeventfds.clear()
        self.fixed.clear()
        self.irqchip = self.pit = self.vcpu = False
        for bus in self.buses.values():
            bus.clear()

    def _register(self, pio: bool, addr: int, length: int, dev: Device) -> None:
        self.buses[pio].append((addr, length, dev))

    def _unregister(self, pio: bool, dev: Device) -> None:
        bus = self.buses[pio]
        for i, entry in enumerate(bus):
            if entry[2] is dev:
                del bus[i]
                return
        raise AssertionError(f"{dev} is not on its bus")

    def protect(self, slot: int, writable: bool) -> None:
        """Userspace made a pool buffer read-only or writable again; iofds
        that point at it stay registered (api.rst "Buffer")."""
        self.writable[slot] = writable

    def recreate(self, slot: int) -> None:
        """The slot's eventfd is closed and a new one opened in its place.
        Registrations keep the old context (and their reference to it)."""
        self.slot_ctx[slot] = self._next_ctx
        self._next_ctx += 1

    # -- queries ------------------------------------------------------------------------
    def resolve(self, ref: FdRef | None) -> tuple[int, int]:
        """(errno, eventfd context) for ``ref``, per api.rst 4.146 error 9:
        EBADF if it is not an open fd, EINVAL if it is not an eventfd."""
        if ref is None or ref.kind in EBADF_KINDS:
            return errno.EBADF, -1
        if ref.kind in NOT_EVENTFD_KINDS:
            return errno.EINVAL, -1
        if ref.kind != EVENTFD:
            raise ValueError(f"unknown fd kind {ref.kind!r}")
        return 0, self.slot_ctx[ref.slot]

    def bus_busy(self, pio: bool, addr: int, length: int) -> bool:
        """Does [addr, addr + length) overlap any device on the bus?  A
        zero-length device occupies its address."""
        end = addr + length  # meet(), inlined: this runs over up to 1000 entries per case
        return any(a < end and addr < a + (n or 1) for a, n, _ in self.buses[pio])

    def iofd_busy(self, pio: bool, addr: int, span: int) -> bool:
        """Does [addr, addr + span) overlap an iofd on the bus?"""
        return any(r.pio == pio and meet(r.addr, r.length, addr, span) for r in self.iofds)

    def bus_devices(self, pio: bool) -> int:
        """Devices on the bus that count against ``bus_limit`` (api.rst
        8.48): every device but ioeventfds."""
        return len(self.buses[pio]) - sum(1 for e in self.ioeventfds if e.pio == pio)

    def bus_full(self, pio: bool) -> bool:
        """Would one more registration on the bus be ENOSPC?"""
        return self.bus_devices(pio) >= self.bus_limit

    def claimable(self) -> list[Iofd]:
        """Iofds whose eventfd still has an fd in the pool, so they can be deassigned."""
        live = set(self.slot_ctx)
        return [r for r in self.iofds if r.ctx in live]

    # -- the ioctls ---------------------------------------------------------------------
    def apply(self, case: Case) -> int:
        """The errno the kernel must return for ``case`` (0: success); on
        success the registration change is applied to the model.  Where
        api.rst lets several errors apply, the kernel may instead return
        any errno in :attr:`allowed`."""
        self.allowed = set()
        if case.op == IOFD:
            return self._iofd(case)
        if case.op == IOEVENTFD:
            return self._ioeventfd(case)
        if case.op == EFAULT_OP:
            return self._because("iofd-1", errno.EFAULT)
        if case.op == BADSIZE:
            return self._because("badsize", errno.ENOTTY)
        if case.op == COALESCED:
            return self._coalesced(case)
        if case.op == IRQCHIP:
            return self._irqchip()
        if case.op == PIT:
            return self._pit(bool(case.flags & PIT_SPEAKER_DUMMY))
        raise ValueError(f"{case.op!r} is not an ioctl case")

    def _because(self, rule: str, err: int) -> int:
        """Answer ``err`` and remember the api.rst item it comes from."""
        self.rule = rule
        return err

    def why(self) -> str:
        """The documentation behind the latest answer of :meth:`apply`."""
        return API_ITEMS.get(self.rule, self.rule)

    # -- buffers --------------------------------------------------------------------------
    @staticmethod
    def buffer_ref(case: Case) -> BufRef | None:
        """The buffer a KVM_IOFD case registers: None without the flag, and
        a raw 0 for the flag with no buffer given (the field is then 0)."""
        if not case.buffered:
            return None
        return case.buffer if case.buffer is not None else BufRef(RAW)

    @staticmethod
    def buffer_nonzero(ref: BufRef | None) -> bool:
        """Is kvm_iofd.buffer non-zero?  Mapped buffers never sit at 0."""
        return ref is not None and (ref.kind != RAW or ref.raw != 0)

    def buffer_access_ok(self, ref: BufRef, length: int) -> bool:
        """x86-64 access_ok(buffer, len): the pool and the hole are user
        mappings; a raw number is checked against ``user_max``."""
        if ref.kind != RAW:
            return True
        return ref.raw + length <= self.user_max  # also catches wrapping past 2**64

    def _check_modelled(self, ref: BufRef, length: int) -> None:
        """Refuse a buffer the model cannot predict accesses through: one
        that runs past its pool buffer or the hole, or a raw user address
        outside the ranges KvmSide checks are unmapped."""
        reach = min(length, PROBE_REACH)
        if ref.kind == POOL:
            ok = 0 <= ref.slot < BUF_SLOTS and ref.offset >= 0 and ref.offset + length <= BUF_SIZE
        elif ref.kind == HOLE:
            ok = ref.offset >= 0 and ref.offset + length <= HOLE_SIZE
        else:
            low = ref.raw < RAW_LOW_END
            top = ref.raw >= self.user_max - TOP_SPAN and ref.raw + reach <= self.user_max
            ok = low or top
        if not ok:
            raise ValueError(f"buffer {ref} for {length:#x} bytes is not modelled")

    def _buffer_serves(self, dev: Iofd, offset: int, write: bool) -> bool:
        """Can the iofd's buffer be accessed at ``offset`` now?  A read-only
        pool buffer serves reads only; the hole and raw user addresses (see
        the module doc) serve nothing."""
        ref = dev.buffer
        assert ref is not None
        if ref.kind != POOL:
            return False
        return not write or self.writable[ref.slot]

    def commit(self, expect: ProbeExpect) -> None:
        """The kernel did what ``expect`` says: take its buffer contents."""
        for slot, data in expect.buffers.items():
            self.memory[slot][:] = data

    def iofd_args_errno(self, case: Case) -> int:
        """api.rst 4.146 errors 2-8 (EINVAL for malformed arguments), else 0."""
        if case.flags & ~IOFD_VALID_FLAGS:
            return self._because("iofd-2", errno.EINVAL)
        # Error 3 (PIO off x86) never applies: the fuzzer runs on x86.
        if any(case.pad):
            return self._because("iofd-4", errno.EINVAL)
        if not case.buffered and self.buffer_nonzero(case.buffer):
            return self._because("iofd-5", errno.EINVAL)
        if case.length == 0 or case.length > S32_MAX:
            return self._because("iofd-6", errno.EINVAL)
        if case.addr + case.length > U64_MASK:  # end == 2**64 does not fit either
            return self._because("iofd-7", errno.EINVAL)
        if case.pio and case.addr + case.length > PIO_LIMIT:
            return self._because("iofd-8", errno.EINVAL)
        return 0

    def _iofd(self, case: Case) -> int:
        """api.rst 4.146: "When several apply, any one of them may be
        returned".  The answer is the first in the document's order, and
        :attr:`allowed` collects every other one that applies."""
        applies: list[tuple[str, int]] = []  # (API_ITEMS key, errno), in api.rst order
        args_err = self.iofd_args_errno(case)
        if args_err:
            applies.append((self.rule, args_err))
        fd_err, ctx = self.resolve(case.fd)
        if fd_err:
            applies.append(("iofd-9", fd_err))
        ref = self.buffer_ref(case)
        if not args_err and not case.deassign:
            # Errors 10, 13 and 14 describe a well-formed range; they apply
            # beside a bad fd.
            if ref is not None and not self.buffer_access_ok(ref, case.length):
                applies.append(("iofd-assign-10", errno.EFAULT))
            if self.bus_busy(case.pio, case.addr, case.length):
                applies.append(("iofd-assign-13", errno.EEXIST))
            if self.bus_full(case.pio):
                applies.append(("iofd-assign-14", errno.ENOSPC))
        if applies:
            self.allowed = {err for _, err in applies[1:]}
            return self._because(*applies[0])
        if case.deassign:  # deassign error 10: the buffer is not compared
            for i, r in enumerate(self.iofds):
                if (r.pio, r.addr, r.length, r.ctx) == (case.pio, case.addr, case.length, ctx):
                    del self.iofds[i]
                    self._unregister(r.pio, r)
                    return self._because("iofd-deassign-ok", 0)
            return self._because("iofd-deassign-10", errno.ENOENT)
        if ref is not None:
            self._check_modelled(ref, case.length)
        new = Iofd(case.pio, case.addr, case.length, ctx, ref)
        self.iofds.append(new)
        self._register(new.pio, new.addr, new.length, new)
        return self._because("iofd-assign-ok", 0)

    # -- other devices on the buses ("Overlaps") ---------------------------------------------
    def zone(self, pio: bool, addr: int, size: int) -> Fixed | None:
        """The coalesced zone registered with exactly these numbers."""
        want = Fixed("coalesced", pio, addr, size)
        return next((z for z in self.fixed if z == want), None)

    def zone_documented(self, case: Case) -> bool:
        """Does api.rst say what this coalesced zone case returns?  Not for
        a zone overlapping another zone (which unregister removes is then
        not documented), for unregistering anything but an exact zone, or
        for a register on a full bus that also overlaps an iofd (which
        error wins is not documented)."""
        span = case.length or 1
        if case.deassign:
            return self.zone(case.pio, case.addr, case.length) is not None
        if case.addr + span > (PIO_LIMIT if case.pio else 1 << 64):
            return False
        zones = [z for z in self.fixed if z.kind == "coalesced" and z.pio == case.pio]
        if any(meet(z.addr, z.span, case.addr, span) for z in zones):
            return False
        return not (self.bus_full(case.pio) and self.iofd_busy(case.pio, case.addr, span))

    def _coalesced(self, case: Case) -> int:
        if not self.zone_documented(case):
            raise ValueError(f"{case}: api.rst does not say what this returns")
        if case.deassign:
            z = self.zone(case.pio, case.addr, case.length)
            assert z is not None
            self.fixed.remove(z)
            self._unregister(z.pio, z)
            return self._because("coalesced-ok", 0)
        if self.iofd_busy(case.pio, case.addr, case.length or 1):
            return self._because("coalesced-iofd", errno.EEXIST)
        if self.bus_full(case.pio):
            return self._because("coalesced-limit", errno.ENOSPC)
        self._add_fixed(Fixed("coalesced", case.pio, case.addr, case.length))
        return self._because("coalesced-ok", 0)

    def _add_fixed(self, *devs: Fixed) -> None:
        for dev in devs:
            self.fixed.append(dev)
            self._register(dev.pio, dev.addr, dev.length, dev)

    def _room(self, devs: list[Fixed]) -> bool:
        """Do the buses have room for all of ``devs``?"""
        return all(
            self.bus_devices(pio) + sum(d.pio == pio for d in devs) <= self.bus_limit for pio in (True, False)
        )

    @staticmethod
    def irqchip_devices() -> list[Fixed]:
        return [Fixed("pic", True, a, n) for a, n in PIC_RANGES] + [Fixed("ioapic", False, *IOAPIC_RANGE)]

    @staticmethod
    def pit_devices(speaker: bool) -> list[Fixed]:
        speakers = [Fixed("speaker", True, *SPEAKER_RANGE)] if speaker else []
        return [Fixed("pit", True, *PIT_RANGE), *speakers]

    def irqchip_documented(self) -> bool:
        """KVM_CREATE_IRQCHIP is for a VM without vCPUs (it sets up future
        ones), and api.rst gives no errno for a bus without room."""
        return not self.vcpu and (self.irqchip or self._room(self.irqchip_devices()))

    def pit_documented(self, speaker: bool) -> bool:
        """KVM_CREATE_PIT2 is only valid after KVM_CREATE_IRQCHIP, and
        api.rst gives no errno for a bus without room."""
        return self.irqchip and (self.pit or self._room(self.pit_devices(speaker)))

    def _irqchip(self) -> int:
        if not self.irqchip_documented():
            raise ValueError("KVM_CREATE_IRQCHIP here is not documented (a vCPU exists, or no room)")
        if self.irqchip:
            return self._because("irqchip-exists", errno.EEXIST)
        devs = self.irqchip_devices()
        if any(self.iofd_busy(d.pio, d.addr, d.span) for d in devs):
            return self._because("irqchip-iofd", errno.EEXIST)
        self._add_fixed(*devs)
        self.irqchip = True
        return self._because("irqchip-ok", 0)

    def _pit(self, speaker: bool) -> int:
        if not self.pit_documented(speaker):
            raise ValueError("KVM_CREATE_PIT2 here is not documented (no irqchip, or no room)")
        if self.pit:
            return self._because("pit-exists", errno.EEXIST)
        devs = self.pit_devices(speaker)
        if any(self.iofd_busy(d.pio, d.addr, d.span) for d in devs):
            return self._because("pit-iofd", errno.EEXIST)
        self._add_fixed(*devs)
        self.pit = True
        return self._because("pit-ok", 0)

    def _ioeventfd(self, case: Case) -> int:
        err = self._ioeventfd_errno(case)
        if err and self.rule == "":
            self.rule = "ioeventfd-mainline"
        return err

    def _ioeventfd_errno(self, case: Case) -> int:
        """Mainline 7.3's KVM_IOEVENTFD (api.rst 4.59 numbers no errors),
        plus v2's EEXIST against iofds and the bus limit of 8.48."""
        self.rule = ""
        pio = case.pio
        wildcard = not case.flags & uapi.KVM_IOEVENTFD_FLAG_DATAMATCH
        if case.flags & IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY and not pio:
            raise ValueError("the virtio-ccw bus is not modelled")
        if case.deassign:  # mainline checks nothing but the fd on deassign
            err, ctx = self.resolve(case.fd)
            if err:
                return err
            for i, e in enumerate(self.ioeventfds):
                if (e.pio, e.ctx, e.addr, e.length) != (pio, ctx, case.addr, case.length):
                    continue
                if (e.datamatch is None) != wildcard:
                    continue
                if not wildcard and e.datamatch != case.datamatch:
                    continue
                del self.ioeventfds[i]
                self._unregister(e.pio, e)
                return 0
            return errno.ENOENT
        if case.length not in IOEVENTFD_LENGTHS:
            return errno.EINVAL
        if case.addr + case.length > U64_MASK:
            return errno.EINVAL
        if case.flags & ~IOEVENTFD_VALID_FLAGS:
            return errno.EINVAL
        if case.length == 0 and not wildcard:
            return errno.EINVAL
        err, ctx = self.resolve(case.fd)
        if err:
            return err
        new = Ioeventfd(pio, case.addr, case.length, ctx, None if wildcard else case.datamatch)
        for e in self.ioeventfds:  # mainline: no two ioeventfds that could both accept a write
            if e.pio != pio or e.addr != new.addr:
                continue
            if not e.length or not new.length:
                return errno.EEXIST
            if e.length == new.length and (
                e.datamatch is None or new.datamatch is None or e.datamatch == new.datamatch
            ):
                return errno.EEXIST
        if self.iofd_busy(pio, new.addr, new.span):
            return self._because("ioeventfd-iofd", errno.EEXIST)
        if self.bus_full(pio):
            return self._because("ioeventfd-limit", errno.ENOSPC)
        self.ioeventfds.append(new)
        self._register(new.pio, new.addr, new.length, new)
        return 0

    # -- guest accesses -------------------------------------------------------------------
    def _accepts(self, dev: Device, access: Access, data: bytes) -> bool:
        """Does ``dev`` take this bus access (api.rst 4.146 "Accesses" and
        "Buffer" for an iofd: entirely inside the range and, with a buffer,
        the buffer bytes accessible; 4.59 for an ioeventfd: a write at its
        address, of its length unless that is 0, with its datamatch)?"""
        if isinstance(dev, Iofd):
            if not dev.addr <= access.addr or access.addr + access.size > dev.end:
                return False
            return dev.buffer is None or self._buffer_serves(dev, access.addr - dev.addr, access.write)
        if isinstance(dev, Fixed):
            return False  # probe_safe() keeps probes away from these
        if not access.write or dev.addr != access.addr:
            return False
        if dev.length and dev.length != access.size:
            return False
        return dev.datamatch is None or dev.datamatch == int.from_bytes(data, "little")

    def _claimant_dev(self, access: Access, data: bytes) -> Iofd | Ioeventfd | None:
        """The device that takes a bus access; every matching device is
        found, whatever the registration order (patch 1's invariant), and
        at most one matches (iofds are exclusive, and mainline refuses two
        ioeventfds that could take the same write)."""
        for dev in (*self.iofds, *self.ioeventfds):
            if dev.pio == access.pio and self._accepts(dev, access, data):
                return dev
        return None

    @staticmethod
    def _who(dev: Iofd | Ioeventfd | None) -> tuple[str, int]:
        if dev is None:
            return "exit", -1
        return ("iofd" if isinstance(dev, Iofd) else "ioeventfd"), dev.ctx

    def claimant(self, access: Access, value: int) -> tuple[str, int]:
        """("iofd", ctx), ("ioeventfd", ctx) or ("exit", -1) for one bus access."""
        data = (value & mask(access.size)).to_bytes(access.size, "little")
        return self._who(self._claimant_dev(access, data))

    def buffer_fault(self, access: Access) -> bool:
        """Is the access inside a buffered iofd whose buffer cannot take it?"""
        return any(
            r.pio == access.pio
            and r.buffer is not None
            and r.addr <= access.addr
            and access.addr + access.size <= r.end
            and not self._buffer_serves(r, access.addr - r.addr, access.write)
            for r in self.iofds
        )

    def position(self, access: Access) -> str:
        """Where a guest access lies relative to the iofds on its bus:
        "inside" one, "straddling" an edge, or "outside" all of them."""
        end = access.addr + access.size
        touched = [r for r in self.iofds if r.pio == access.pio and r.addr < end and access.addr < r.end]
        if any(r.addr <= access.addr and end <= r.end for r in touched):
            return "inside"
        return "straddling" if touched else "outside"

    def probe_safe(self, access: Access) -> bool:
        """False where api.rst does not say what happens, or the fuzzer does
        not check it.

        * An access meeting a coalesced zone or an in-kernel device: what
          those do with it is not KVM_IOFD's business (only registering them
          next to iofds is), and PIT writes would start timers.
        * An MMIO read at a zero-length MMIO ioeventfd, or a page-crossing
          access starting at one: VMX's fast-MMIO path signals the
          ioeventfd from the faulting address alone, without decoding the
          access (mainline; api.rst 4.59 only says len 0 "may get a faster
          vmexit").
        """
        end = access.addr + access.size
        if any(d.pio == access.pio and d.addr < end and access.addr < d.addr + d.span for d in self.fixed):
            return False
        at_fast = not access.pio and any(
            not e.pio and e.length == 0 and e.addr == access.addr for e in self.ioeventfds
        )
        return not (at_fast and (not access.write or access.page_crossing))

    def probe(self, accesses: tuple[Access, ...] | list[Access], read_value: int) -> ProbeExpect:
        """Predict a program that performs ``accesses`` in order, then writes
        the OR of its reads to DONE_PORT (4 bytes) and halts; every read that
        exits is answered with ``read_value``.  Pure: the buffers' new
        contents are in the result, and :meth:`commit` takes them once the
        kernel agreed."""
        out = ProbeExpect()
        memory = {slot: bytearray(data) for slot, data in self.memory.items()}
        for acc in accesses:
            value = self._guest_access(acc, read_value, memory, out)
            if not acc.write:
                out.result |= value & mask(min(acc.size, 4))
        done = Access(True, DONE_PORT, 4, True)
        data = out.result.to_bytes(4, "little")
        if self._perform(done, data, self._claimant_dev(done, data), memory, out) is not None:
            out.end = "hlt"
        out.buffers = {slot: bytes(data) for slot, data in memory.items()}
        return out

    def _guest_access(
        self, acc: Access, read_value: int, memory: dict[int, bytearray], out: ProbeExpect
    ) -> int:
        """One guest access, per api.rst 4.146 "Accesses": offer each part's
        pieces in order until one is not claimed; it and the rest of its
        part exit, one KVM_EXIT_MMIO per piece, after both parts were
        offered.  The value a read gets (0 for a write)."""
        data = acc.data if acc.write else bytes(acc.size)
        got = bytearray(acc.size)
        exiting: list[Access] = []
        for part in acc.pieces():
            for i, piece in enumerate(part):
                off = piece.addr - acc.addr
                chunk = data[off : off + piece.size]
                loaded = self._perform(piece, chunk, self._claimant_dev(piece, chunk), memory, out)
                if loaded is None:
                    exiting += part[i:]
                    break
                got[off : off + piece.size] = loaded
        for piece in exiting:
            off = piece.addr - acc.addr
            word = int.from_bytes(data[off : off + piece.size], "little") if acc.write else 0
            out.exits.append(("io" if acc.pio else "mmio", piece.addr, piece.size, acc.write, word))
            if not acc.write:
                got[off : off + piece.size] = (read_value & mask(piece.size)).to_bytes(piece.size, "little")
        return int.from_bytes(got, "little")

    def _perform(
        self,
        acc: Access,
        data: bytes,
        dev: Iofd | Ioeventfd | None,
        memory: dict[int, bytearray],
        out: ProbeExpect,
    ) -> bytes | None:
        """Apply one bus access that ``dev`` claims (api.rst "Buffer": the
        value is stored before the signal; a read returns the buffer's
        bytes, or zeros without a buffer): the bytes a read gets, or None
        if it exits instead."""
        if dev is None:
            out.faults += self.buffer_fault(acc)
            return None
        loaded = bytes(acc.size)
        if isinstance(dev, Iofd) and dev.buffer is not None:
            buf = memory[dev.buffer.slot]
            at = dev.buffer.offset + acc.addr - dev.addr
            if acc.write:
                buf[at : at + acc.size] = data
                out.stores += 1
            else:
                loaded = bytes(buf[at : at + acc.size])
                out.loads += 1
        if acc.write:
            out.signals[dev.ctx] += 1
        return loaded

    def describe(self) -> str:
        """The registrations, for a mismatch report."""
        per_bus = ", ".join(f"{'pio' if pio else 'mmio'} {self.bus_devices(pio)}" for pio in (True, False))
        lines = [
            f"bus limit {self.bus_limit} ({per_bus}), {len(self.iofds)} iofds, "
            f"{len(self.ioeventfds)} ioeventfds"
        ]
        read_only = [f"buf{slot}" for slot, ok in enumerate(self.writable) if not ok]
        lines.append(
            f"  user addresses end at {self.user_max:#x}; read-only buffers: {', '.join(read_only) or 'none'}"
        )
        lines += [f"  {r}" for r in self.iofds]
        lines += [f"  {e}" for e in self.ioeventfds]
        lines += [f"  {d}" for d in self.fixed]
        lines.append(f"  irqchip {self.irqchip}, pit {self.pit}, vcpu {self.vcpu}")
        for pio, bus in self.buses.items():
            if bus:
                order = ", ".join(f"{a:#x}+{n}" for a, n, _ in bus)
                lines.append(f"  {'pio' if pio else 'mmio'} bus, in registration order: {order}")
        lines.append("  pool: " + ", ".join(f"efd{i}=ctx{c}" for i, c in enumerate(self.slot_ctx)))
        return "\n".join(lines)
