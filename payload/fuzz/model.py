"""What KVM_IOFD (and KVM_IOEVENTFD next to it) must answer, in pure Python.

The model is written from the patch, not from observed behaviour: the
error table in Documentation/virt/kvm/api.rst (4.144 KVM_IOFD) and the order
in which virt/kvm/eventfd.c checks things:

1. ``iofd_check_args``: unknown flag bits, non-zero pad, ``len`` 0 or above
   S32_MAX, ``addr + len`` wrapping (computed in u64, so a range that ends
   exactly at 2**64 is refused too), a PIO range ending past port 0xffff:
   all EINVAL, in that order, before the fd is looked at.
2. ``eventfd_ctx_fdget``: EBADF if ``fd`` is not an open file (negative,
   closed, past the fd table), EINVAL if it is open but not an eventfd.
3. Assign: EEXIST if the range meets any device on the bus (another iofd, an
   ioeventfd, whose zero length counts as one byte), then ENOSPC if the VM
   already holds ``limit`` iofds (both buses together).  EEXIST wins over
   ENOSPC because it is checked first.
4. Deassign: ENOENT unless an iofd matches addr, len, the eventfd (the
   context behind the fd, not the fd number) and the bus.

KVM_IOEVENTFD is modelled as mainline 6.12 has it, plus the patch's one
change: an ioeventfd whose address (``len`` or one byte) meets an iofd on its
bus is EEXIST.

A VM in the fuzzer has no irqchip, PIT or coalesced MMIO zone, so iofds and
ioeventfds are the only devices on its buses; the model relies on that.

``probe`` predicts what a guest program does with the registrations: which
accesses exit to userspace, which eventfd each claimed write signals, and
what reads return.  By default it follows the documented rules (an access
goes to the one device that claims it).  With ``as_built=True`` it instead
replays what virt/kvm/kvm_main.c does: the bus is an array kept in the
order kvm_io_bus_register_dev() inserts into, searched with the kernel's
bsearch and kvm_io_bus_cmp().  The two differ where that array is not
sorted, which happens when a zero-length ioeventfd at X is registered
before a range that ends exactly at X: kvm_io_bus_cmp() then says "equal"
and the range is inserted after the ioeventfd (see KNOWN_BUGS).
"""

from __future__ import annotations

import errno
from collections import Counter
from dataclasses import dataclass, field

from payload.kvm import uapi

U64_MASK = (1 << 64) - 1
U32_MASK = (1 << 32) - 1
S32_MAX = (1 << 31) - 1
PIO_LIMIT = 0x10000
"""A PIO iofd must end at or before this port (KVM_IOFD_PIO_LIMIT)."""

IOFD_VALID_FLAGS = uapi.KVM_IOFD_FLAG_DEASSIGN | uapi.KVM_IOFD_FLAG_PIO
IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY = 1 << 3
IOEVENTFD_FLAG_FAST_MMIO = 1 << 4  # kvm_ioeventfd_flag_nr_fast_mmio: accepted, ignored
IOEVENTFD_VALID_FLAGS = (IOEVENTFD_FLAG_FAST_MMIO << 1) - 1
IOEVENTFD_LENGTHS = (0, 1, 2, 4, 8)

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


@dataclass(frozen=True)
class Case:
    """One step of a fuzz run; everything needed to replay it."""

    op: str
    addr: int = 0
    length: int = 0
    fd: FdRef | None = None
    flags: int = 0
    pad: bytes = bytes(12)
    datamatch: int = 0
    slot: int = 0
    size: int = 0  # BADSIZE: the struct size encoded in the ioctl number
    accesses: tuple[Access, ...] = ()

    @property
    def pio(self) -> bool:
        if self.op == IOEVENTFD:
            return bool(self.flags & uapi.KVM_IOEVENTFD_FLAG_PIO)
        return bool(self.flags & uapi.KVM_IOFD_FLAG_PIO)

    @property
    def deassign(self) -> bool:
        if self.op == IOEVENTFD:
            return bool(self.flags & uapi.KVM_IOEVENTFD_FLAG_DEASSIGN)
        return bool(self.flags & uapi.KVM_IOFD_FLAG_DEASSIGN)

    def __str__(self) -> str:
        if self.op in (IOFD, IOEVENTFD):
            text = (
                f"{self.op}(addr={self.addr:#x}, len={self.length:#x}, fd={self.fd}, "
                f"flags={self.flags:#x}"
            )
            if any(self.pad):
                text += f", pad={self.pad.hex()}"
            if self.op == IOEVENTFD and self.flags & uapi.KVM_IOEVENTFD_FLAG_DATAMATCH:
                text += f", datamatch={self.datamatch:#x}"
            return text + ")"
        if self.op == BADSIZE:
            return f"badsize(size={self.size})"
        if self.op == RECREATE:
            return f"recreate(efd{self.slot})"
        if self.op == PROBE:
            return "probe(" + ", ".join(map(str, self.accesses)) + ")"
        return self.op


# --- registrations ---------------------------------------------------------------
@dataclass(frozen=True)
class Iofd:
    pio: bool
    addr: int
    length: int
    ctx: int

    @property
    def end(self) -> int:
        return self.addr + self.length

    def __str__(self) -> str:
        return f"iofd {'pio' if self.pio else 'mmio'} [{self.addr:#x}, {self.end:#x}) ctx{self.ctx}"


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


KNOWN_BUGS = {
    "io-bus-order": (
        "kvm_io_bus_register_dev() inserts with kvm_io_bus_cmp(), which treats a "
        "zero-length entry at X and a range ending at X as equal, so a range "
        "registered after a zero-length ioeventfd at its end lands after it in "
        "the array; bsearch then misses entries and claimed accesses exit to "
        "userspace: writes inside an iofd, or to an ioeventfd next to one."
    ),
}
"""Kernel behaviour that contradicts the documentation, which ``as_built``
reproduces so that a fuzz run can tell it from anything new."""

BusEntry = tuple[int, int, "Iofd | Ioeventfd"]
"""(addr, len, device) as struct kvm_io_range holds them."""


def bus_cmp(addr1: int, len1: int, addr2: int, len2: int) -> int:
    """kvm_io_bus_cmp(r1, r2), with r2's zero length meaning "this address"."""
    if addr1 < addr2:
        return -1
    if len2:
        addr1 += len1
        addr2 += len2
    if addr1 > addr2:
        return 1
    return 0


def bus_bsearch(bus: list[BusEntry], addr: int, length: int) -> int:
    """lib/bsearch.c's __inline_bsearch() with kvm_io_bus_sort_cmp(); -1 if none."""
    base, num = 0, len(bus)
    while num > 0:
        pivot = base + (num >> 1)
        result = bus_cmp(addr, length, bus[pivot][0], bus[pivot][1])
        if result == 0:
            return pivot
        if result > 0:
            base = pivot + 1
            num -= 1
        num >>= 1
    return -1


def meet(a: int, alen: int, b: int, blen: int) -> bool:
    """iofd_ranges_meet(): do [a, a + alen) and [b, b + blen) share a byte?"""
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

    @property
    def kvm_exits(self) -> int:
        """KVM_RUN returns: each exiting access plus the final DONE or HLT."""
        return len(self.exits) + 1


class Model:
    """Registrations of one VM plus the pool's eventfd identities."""

    def __init__(self, limit: int, slots: int) -> None:
        if limit <= 0 or slots <= 0:
            raise ValueError("limit and slots must be positive")
        self.limit = limit
        self.slot_ctx = list(range(slots))
        """Eventfd context behind each pool slot; RECREATE gives a fresh one."""
        self._next_ctx = slots
        self.iofds: list[Iofd] = []
        self.ioeventfds: list[Ioeventfd] = []
        self.buses: dict[bool, list[BusEntry]] = {True: [], False: []}
        """The PIO (True) and MMIO (False) bus arrays in the kernel's order."""

    # -- state changes that are not ioctls ------------------------------------------
    def reset_vm(self) -> None:
        self.iofds.clear()
        self.ioeventfds.clear()
        for bus in self.buses.values():
            bus.clear()

    def _register(self, pio: bool, addr: int, length: int, dev: Iofd | Ioeventfd) -> None:
        """kvm_io_bus_register_dev(): insert before the first entry that
        compares greater, exactly as the kernel's loop does."""
        bus = self.buses[pio]
        i = 0
        while i < len(bus) and bus_cmp(bus[i][0], bus[i][1], addr, length) <= 0:
            i += 1
        bus.insert(i, (addr, length, dev))

    def _unregister(self, pio: bool, dev: Iofd | Ioeventfd) -> None:
        bus = self.buses[pio]
        for i, entry in enumerate(bus):
            if entry[2] is dev:
                del bus[i]
                return
        raise AssertionError(f"{dev} is not on its bus")

    def recreate(self, slot: int) -> None:
        """The slot's eventfd is closed and a new one opened in its place.
        Registrations keep the old context (and their reference to it)."""
        self.slot_ctx[slot] = self._next_ctx
        self._next_ctx += 1

    # -- queries ------------------------------------------------------------------------
    def resolve(self, ref: FdRef | None) -> tuple[int, int]:
        """(errno, eventfd context) that eventfd_ctx_fdget() gives for ``ref``."""
        if ref is None or ref.kind in EBADF_KINDS:
            return errno.EBADF, -1
        if ref.kind in NOT_EVENTFD_KINDS:
            return errno.EINVAL, -1
        if ref.kind != EVENTFD:
            raise ValueError(f"unknown fd kind {ref.kind!r}")
        return 0, self.slot_ctx[ref.slot]

    def bus_busy(self, pio: bool, addr: int, length: int) -> bool:
        """iofd_bus_busy(): does [addr, addr + length) meet any device on the bus?"""
        return any(r.pio == pio and meet(r.addr, r.length, addr, length) for r in self.iofds) or any(
            e.pio == pio and meet(e.addr, e.span, addr, length) for e in self.ioeventfds
        )

    def claimable(self) -> list[Iofd]:
        """Iofds whose eventfd still has an fd in the pool, so they can be deassigned."""
        live = set(self.slot_ctx)
        return [r for r in self.iofds if r.ctx in live]

    # -- the ioctls ---------------------------------------------------------------------
    def apply(self, case: Case) -> int:
        """The errno the kernel must return for ``case`` (0: success); on
        success the registration change is applied to the model."""
        if case.op == IOFD:
            return self._iofd(case)
        if case.op == IOEVENTFD:
            return self._ioeventfd(case)
        if case.op == EFAULT_OP:
            return errno.EFAULT
        if case.op == BADSIZE:
            return errno.ENOTTY
        raise ValueError(f"{case.op!r} is not an ioctl case")

    def iofd_args_errno(self, case: Case) -> int:
        """iofd_check_args(): EINVAL for malformed arguments, else 0."""
        if case.flags & ~IOFD_VALID_FLAGS:
            return errno.EINVAL
        if any(case.pad):
            return errno.EINVAL
        if case.length == 0 or case.length > S32_MAX:
            return errno.EINVAL
        if case.addr + case.length > U64_MASK:  # wraps in u64: end == 2**64 included
            return errno.EINVAL
        if case.pio and case.addr + case.length > PIO_LIMIT:
            return errno.EINVAL
        return 0

    def _iofd(self, case: Case) -> int:
        err = self.iofd_args_errno(case)
        if err:
            return err
        err, ctx = self.resolve(case.fd)
        if err:
            return err
        if case.deassign:
            for i, r in enumerate(self.iofds):
                if (r.pio, r.addr, r.length, r.ctx) == (case.pio, case.addr, case.length, ctx):
                    del self.iofds[i]
                    self._unregister(r.pio, r)
                    return 0
            return errno.ENOENT
        if self.bus_busy(case.pio, case.addr, case.length):
            return errno.EEXIST
        if len(self.iofds) >= self.limit:
            return errno.ENOSPC
        new = Iofd(case.pio, case.addr, case.length, ctx)
        self.iofds.append(new)
        self._register(new.pio, new.addr, new.length, new)
        return 0

    def _ioeventfd(self, case: Case) -> int:
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
        for e in self.ioeventfds:  # ioeventfd_check_collision()
            if e.pio != pio or e.addr != new.addr:
                continue
            if not e.length or not new.length:
                return errno.EEXIST
            if e.length == new.length and (
                e.datamatch is None or new.datamatch is None or e.datamatch == new.datamatch
            ):
                return errno.EEXIST
        if any(r.pio == pio and meet(r.addr, r.length, new.addr, new.span) for r in self.iofds):
            return errno.EEXIST
        self.ioeventfds.append(new)
        self._register(new.pio, new.addr, new.length, new)
        return 0

    # -- guest accesses -------------------------------------------------------------------
    @staticmethod
    def _accepts(dev: Iofd | Ioeventfd, access: Access, value: int) -> bool:
        """The device's own range check: iofd_in_range() for both directions,
        ioeventfd_in_range() for writes (an ioeventfd has no read handler)."""
        if isinstance(dev, Iofd):
            return dev.addr <= access.addr and access.addr + access.size <= dev.end
        if not access.write or dev.addr != access.addr:
            return False
        if dev.length and dev.length != access.size:
            return False
        return dev.datamatch is None or dev.datamatch == value & mask(access.size)

    def claimant(self, access: Access, value: int) -> tuple[str, int]:
        """("iofd", ctx), ("ioeventfd", ctx) or ("exit", -1): the documented rule."""
        for dev in (*self.iofds, *self.ioeventfds):
            if dev.pio == access.pio and self._accepts(dev, access, value):
                return ("iofd" if isinstance(dev, Iofd) else "ioeventfd"), dev.ctx
        return "exit", -1

    def dispatch(self, access: Access, value: int) -> tuple[str, int]:
        """Like :meth:`claimant`, but the way __kvm_io_bus_write()/read() find
        the device: bsearch, walk back to the first equal entry, then try each
        equal entry in order."""
        bus = self.buses[access.pio]
        idx = bus_bsearch(bus, access.addr, access.size)
        if idx < 0:
            return "exit", -1
        while idx > 0 and bus_cmp(access.addr, access.size, bus[idx - 1][0], bus[idx - 1][1]) == 0:
            idx -= 1
        while idx < len(bus) and bus_cmp(access.addr, access.size, bus[idx][0], bus[idx][1]) == 0:
            dev = bus[idx][2]
            if self._accepts(dev, access, value):
                return ("iofd" if isinstance(dev, Iofd) else "ioeventfd"), dev.ctx
            idx += 1
        return "exit", -1

    def fast_mmio_ambiguous(self, access: Access) -> bool:
        """An MMIO access at a zero-length MMIO ioeventfd: on VMX it may take
        the fast-MMIO path (a separate, always sorted bus) or the MMIO bus,
        depending on whether the page already has an MMIO SPTE."""
        return not access.pio and any(
            not e.pio and e.length == 0 and e.addr == access.addr for e in self.ioeventfds
        )

    def probe_safe(self, access: Access) -> bool:
        """False where the outcome depends on more than the documented rules.

        * An MMIO read at a zero-length MMIO ioeventfd: on VMX the fast-MMIO
          path signals it without decoding whether it was a read (mainline).
        * An access meeting an ioeventfd that overlaps another ioeventfd at a
          different address: mainline allows that, and then the io bus's
          sorted array is not sorted, so its bsearch may miss (mainline too).
        """
        if not access.write and self.fast_mmio_ambiguous(access):
            return False
        same_bus = [e for e in self.ioeventfds if e.pio == access.pio]
        for e in same_bus:
            if not meet(e.addr, e.span, access.addr, access.size):
                continue
            if any(o.addr != e.addr and meet(o.addr, o.span, e.addr, e.span) for o in same_bus):
                return False
        return True

    def probe(
        self, accesses: tuple[Access, ...] | list[Access], read_value: int, as_built: bool = False
    ) -> ProbeExpect:
        """Predict a program that performs ``accesses`` in order, then writes
        the OR of its reads to DONE_PORT (4 bytes) and halts; every read that
        exits is answered with ``read_value``.  ``as_built``: see the module doc."""
        claim = self.dispatch if as_built else self.claimant
        out = ProbeExpect()
        for acc in accesses:
            value = PATTERN if acc.write else 0
            who, ctx = claim(acc, value)
            if who == "exit":
                data = value & mask(acc.size) if acc.write else 0
                out.exits.append(("io" if acc.pio else "mmio", acc.addr, acc.size, acc.write, data))
                if not acc.write:
                    out.result |= read_value & mask(acc.size)
            elif acc.write:
                out.signals[ctx] += 1
        done = Access(True, DONE_PORT, 4, True)
        who, ctx = claim(done, out.result)
        if who != "exit":
            out.signals[ctx] += 1
            out.end = "hlt"
        return out

    def describe(self) -> str:
        """The registrations, for a mismatch report."""
        lines = [f"limit {self.limit}, {len(self.iofds)} iofds, {len(self.ioeventfds)} ioeventfds"]
        lines += [f"  {r}" for r in self.iofds]
        lines += [f"  {e}" for e in self.ioeventfds]
        for pio, bus in self.buses.items():
            if bus:
                order = ", ".join(f"{a:#x}+{n}" for a, n, _ in bus)
                lines.append(f"  {'pio' if pio else 'mmio'} bus order: {order}")
        lines.append("  pool: " + ", ".join(f"efd{i}=ctx{c}" for i, c in enumerate(self.slot_ctx)))
        return "\n".join(lines)
