"""KVM_IOFD_FLAG_BUFFER end to end: an iofd as a bank of registers.

Runs as root inside the test VM on the patched kernel.  Each test checks
one sentence of api.rst 4.146 KVM_IOFD (section "Buffer" unless it says
otherwise), with exact counts as in test_iofd_e2e: the eventfd's counter
says how many writes KVM signalled, and the RunResult how many times
KVM_RUN returned.  Every guest program ends with one DONE_PORT write, so
"no access exited to userspace" is ``exits == 1`` with nothing handled.

The buffer is a :class:`payload.kvm.buffer.RegisterBuffer`, filled with a
known background before the run, so a test sees both the bytes a write
must change and the neighbours it must leave alone.  Guest programs come
from :mod:`payload.guest.bank`; a read's value comes back through its
slot in guest RAM.

The whole module is skipped where KVM_CAP_IOFD is 0 (an unpatched kernel);
the VM runner counts that skip as a failure.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from payload.eventfd import EventFd
from payload.guest import bank
from payload.guest.bank import Op, Read, Write
from payload.kvm.buffer import RegisterBuffer
from payload.kvm.uapi import KVM_IOFD, KVM_IOFD_FLAG_PIO, KvmIofd, iofd_args
from payload.kvm.vmm import Exit, RunResult, Vcpu, Vm, unavailable

RecordProperty = Callable[[str, object], None]
"""pytest's ``record_testsuite_property`` fixture (``record_property`` is
not allowed by the xunit2 junit XML the VM runner writes)."""

TIMEOUT_S = 60.0
RANGE_LEN = 16
BASES = {"pio": 0x0700, "mmio": 0x9100}  # a free port and an unbacked address, as in test_iofd_e2e
OTHER = {"pio": 0x0780, "mmio": 0xA100}  # a second, disjoint range per bus
BUSES = ("pio", "mmio")
WIDTHS = {"pio": (1, 2, 4), "mmio": (1, 2, 4, 8)}
KIND = {"pio": "io", "mmio": "mmio"}  # Exit.kind of an access that reaches userspace

BACKGROUND = bytes(range(0x80, 0x80 + RANGE_LEN))
"""The buffer's bytes before a run: each differs from its neighbours and
from every byte a test writes."""
VALUES = {1: 0xC1, 2: 0xC3C2, 4: 0xC7C6C5C4, 8: 0xCFCECDCCCBCAC9C8}
"""What a write of each width writes: its bytes show the byte order."""
EXITED_READ = 0x600DF00D
"""What the exit handler answers to a read that reached userspace."""


WHY_NOT = unavailable()
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)


# --- fixtures and helpers ------------------------------------------------------------
@pytest.fixture
def buf() -> Iterator[RegisterBuffer]:
    """RANGE_LEN bytes holding BACKGROUND."""
    with RegisterBuffer(RANGE_LEN) as regs:
        fill(regs, BACKGROUND)
        yield regs


def fill(regs: RegisterBuffer, data: bytes) -> None:
    """Set the buffer's first bytes, one store per byte, as a device model
    sets reset values."""
    for i, byte in enumerate(data):
        regs.store(i, byte, 1)


def assign(vm: Vm, efd: EventFd, bus: str, regs: RegisterBuffer | None, base: int | None = None) -> int:
    """A RANGE_LEN iofd at ``base`` (default BASES[bus]), buffered by
    ``regs`` if given; returns the base."""
    base = BASES[bus] if base is None else base
    vm.assign_iofd(base, RANGE_LEN, efd.fd, pio=bus == "pio", buffer=None if regs is None else regs.address)
    return base


def prepare(vm: Vm, ops: Sequence[Op]) -> Vcpu:
    """Load the program for ``ops`` and create the vCPU that will run it.
    Separate from running, so the fault tests can take the buffer away
    after every mmap the test makes, and no later mapping lands on it."""
    vm.load(bank.register_script(ops))
    vcpu = vm.create_vcpu()
    if bank.needs_mmx(ops):
        vcpu.enable_sse()
    return vcpu


def run(vm: Vm, ops: Sequence[Op], handler: Callable[[Exit], int | None] | None = None) -> RunResult:
    return prepare(vm, ops).run_to_halt(handler=handler, timeout_s=TIMEOUT_S)


def slot(vm: Vm, k: int, width: int) -> int:
    """The value the k-th read of the program returned to the guest."""
    return int.from_bytes(vm.read(bank.slot_address(k), width), "little")


def assert_stayed_in_kernel(result: RunResult) -> None:
    """KVM_RUN returned exactly once: at the DONE_PORT write."""
    assert (result.exits, result.end, result.handled) == (1, "done", 0), result


def assert_exited(result: RunResult, accesses: int) -> None:
    """``accesses`` guest accesses reached userspace, then the DONE_PORT write."""
    assert (result.exits, result.end, result.handled) == (accesses + 1, "done", accesses), result


def with_value(background: bytes, offset: int, width: int, value: int) -> bytes:
    """``background`` after a store of ``value`` at ``offset``, little-endian."""
    return background[:offset] + value.to_bytes(width, "little") + background[offset + width :]


def mapped(address: int) -> bool:
    """Whether some mapping of this process covers ``address``."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address < end:
                return True
    return False


def offsets(width: int) -> tuple[int, ...]:
    """Where a ``width``-byte register is put: the first bytes, an
    unaligned offset, and the last bytes of the range."""
    return (0, 3, RANGE_LEN - width)


ACCESS_CASES = [
    (bus, width, offset) for bus in BUSES for width in WIDTHS[bus] for offset in offsets(width)
]


# --- writes land in the buffer ------------------------------------------------------------
@pytest.mark.parametrize(("bus", "width", "offset"), ACCESS_CASES,
                         ids=[f"{b}-w{w}-off{o}" for b, w, o in ACCESS_CASES])
def test_write_is_stored_at_its_offset_little_endian_then_signalled(
    vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str, width: int, offset: int
) -> None:
    """Buffer: "a claimed write of n bytes at addr + o is stored at buffer + o,
    in the order the bus access carries the bytes (little-endian on x86),
    and only then is the eventfd signalled"; Accesses: neither exits."""
    base = assign(vm, efd, bus, buf)
    result = run(vm, [Write(bus, base + offset, width, VALUES[width])])
    assert_stayed_in_kernel(result)
    assert buf.bytes() == with_value(BACKGROUND, offset, width, VALUES[width])
    assert efd.drain() == 1


@pytest.mark.parametrize("bus", BUSES)
def test_last_written_value_wins(vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str) -> None:
    """Buffer: "Every write is stored; when the guest writes a register again
    before the consumer reads it, the consumer sees only the last value"
    (and the counter still counts every write)."""
    base = assign(vm, efd, bus, buf)
    values = [0x11111111, 0x22222222, 0xC7C6C5C4, 0x33333333, 0xA4A3A2A1]
    result = run(vm, [Write(bus, base + 4, 4, v) for v in values])
    assert_stayed_in_kernel(result)
    assert buf.load(4, 4) == values[-1]
    assert buf.bytes() == with_value(BACKGROUND, 4, 4, values[-1])
    assert efd.drain() == len(values)


# --- reads are served from the buffer -------------------------------------------------------
READ_CASES = [(bus, width) for bus in BUSES for width in WIDTHS[bus]]


@pytest.mark.parametrize(("bus", "width"), READ_CASES, ids=[f"{b}-w{w}" for b, w in READ_CASES])
def test_read_returns_the_reset_value_userspace_stored(
    vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str, width: int
) -> None:
    """Buffer: "userspace may write to it at any time, e.g. to set a
    register's reset value" and "A claimed read of n bytes at addr + o
    returns the n bytes at buffer + o"; reads neither exit nor signal."""
    base = assign(vm, efd, bus, buf)
    last = RANGE_LEN - width
    reset = 0x0123456789ABCDEF & ((1 << 8 * width) - 1)
    buf.store(last, reset, width)  # the last register gets a reset value
    result = run(vm, [Read(bus, base + o, width) for o in offsets(width)])
    assert_stayed_in_kernel(result)
    background = with_value(BACKGROUND, last, width, reset)
    for k, o in enumerate(offsets(width)):
        assert slot(vm, k, width) == int.from_bytes(background[o : o + width], "little"), f"offset {o}"
    assert slot(vm, 2, width) == reset
    assert efd.drain() == 0


@pytest.mark.parametrize("bus", BUSES)
def test_read_returns_what_the_guest_wrote(vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str) -> None:
    """Buffer: writes are stored and reads return what is stored, so a
    register reads back the guest's last write, in the kernel."""
    base = assign(vm, efd, bus, buf)
    result = run(vm, [Write(bus, base + 8, 4, VALUES[4]), Read(bus, base + 8, 4), Read(bus, base + 9, 2)])
    assert_stayed_in_kernel(result)
    assert slot(vm, 0, 4) == VALUES[4]
    assert slot(vm, 1, 2) == (VALUES[4] >> 8) & 0xFFFF
    assert efd.drain() == 1


@pytest.mark.parametrize(("bus", "width"), READ_CASES, ids=[f"{b}-w{w}" for b, w in READ_CASES])
def test_range_without_a_buffer_reads_zeros(vm: Vm, efd: EventFd, bus: str, width: int) -> None:
    """KVM_IOFD: "Without it, buffer must be zero, writes only signal, and
    reads return zeros" (and do not exit)."""
    base = assign(vm, efd, bus, None)
    result = run(vm, [Read(bus, base + o, width) for o in offsets(width)])
    assert_stayed_in_kernel(result)
    assert [slot(vm, k, width) for k in range(3)] == [0, 0, 0]
    assert efd.drain() == 0


# --- the buffer cannot be accessed: the access exits ----------------------------------------
@pytest.mark.parametrize("bus", BUSES)
def test_write_after_unmap_exits_with_the_guest_value_and_does_not_signal(
    vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str
) -> None:
    """Buffer: "If the bytes cannot be accessed when the guest writes ...
    it exits to userspace as KVM_EXIT_MMIO or KVM_EXIT_IO with the guest's
    value ... and the eventfd is not signalled."""
    base = assign(vm, efd, bus, buf)
    vcpu = prepare(vm, [Write(bus, base + 4, 4, VALUES[4])])
    buf.unmap()
    seen: list[Exit] = []
    result = vcpu.run_to_halt(handler=seen.append, timeout_s=TIMEOUT_S)
    assert not mapped(buf.address), "something was mapped over the unmapped buffer: the test proved nothing"
    assert_exited(result, 1)
    assert seen == [Exit(KIND[bus], base + 4, 4, True, VALUES[4])]
    assert efd.drain() == 0


@pytest.mark.parametrize("bus", BUSES)
def test_read_after_unmap_exits(vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str) -> None:
    """Buffer: "If the bytes cannot be accessed when the guest ... reads",
    the read exits and the guest gets what userspace answers."""
    base = assign(vm, efd, bus, buf)
    vcpu = prepare(vm, [Read(bus, base + 4, 4)])
    buf.unmap()
    seen: list[Exit] = []

    def answer(access: Exit) -> int:
        seen.append(access)
        return EXITED_READ

    result = vcpu.run_to_halt(handler=answer, timeout_s=TIMEOUT_S)
    assert not mapped(buf.address), "something was mapped over the unmapped buffer: the test proved nothing"
    assert_exited(result, 1)
    assert seen == [Exit(KIND[bus], base + 4, 4, False)]
    assert slot(vm, 0, 4) == EXITED_READ
    assert efd.drain() == 0


@pytest.mark.parametrize("bus", BUSES)
def test_write_to_a_read_only_buffer_exits_but_reads_are_still_served(
    vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str
) -> None:
    """Buffer: a buffer that userspace "write-protected ... after the
    assign" cannot take a write, which exits without a signal; reading it
    still works, so reads stay in the kernel and see the old bytes."""
    base = assign(vm, efd, bus, buf)
    buf.protect(writable=False)
    seen: list[Exit] = []
    ops = [Write(bus, base + 4, 4, VALUES[4]), Read(bus, base + 4, 4), Read(bus, base + RANGE_LEN - 2, 2)]
    result = run(vm, ops, seen.append)
    assert_exited(result, 1)
    assert seen == [Exit(KIND[bus], base + 4, 4, True, VALUES[4])]
    assert slot(vm, 0, 4) == int.from_bytes(BACKGROUND[4:8], "little")
    assert slot(vm, 1, 2) == int.from_bytes(BACKGROUND[-2:], "little")
    assert buf.bytes() == BACKGROUND
    assert efd.drain() == 0


@pytest.mark.parametrize("bus", BUSES)
def test_write_is_claimed_again_once_the_buffer_is_writable(
    vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str
) -> None:
    """Buffer: the bytes are checked "when the guest writes", not at assign:
    a write while the pages are read-only exits, and once they are writable
    again the next write is claimed."""
    base = assign(vm, efd, bus, buf)
    buf.protect(writable=False)
    seen: list[Exit] = []
    assert_exited(run(vm, [Write(bus, base + 4, 4, VALUES[4])], seen.append), 1)
    assert seen == [Exit(KIND[bus], base + 4, 4, True, VALUES[4])]
    assert buf.bytes() == BACKGROUND and efd.drain() == 0
    buf.protect(writable=True)
    assert_stayed_in_kernel(run(vm, [Write(bus, base + 4, 4, VALUES[4])]))
    assert buf.load(4, 4) == VALUES[4]
    assert efd.drain() == 1


# --- assign and deassign ------------------------------------------------------------------------
KERNEL_ADDRESS = 0xFFFF800000000000
"""The first address of the x86-64 kernel half: never a user address."""
WRAPPING = (1 << 64) - RANGE_LEN // 2
"""A buffer whose RANGE_LEN bytes wrap past 2**64 to small addresses:
access_ok() must see that the range's end is below its start."""


@pytest.mark.parametrize("bus", BUSES)
def test_buffer_outside_user_space_is_efault(vm: Vm, efd: EventFd, bus: str) -> None:
    """Error 10: "EFAULT: KVM_IOFD_FLAG_BUFFER is set and [buffer, buffer +
    len) is not a range of user addresses (access_ok() fails)", for a
    kernel address and for a range that wraps around to user addresses."""
    pio = bus == "pio"
    base = BASES[bus]
    for bad in (KERNEL_ADDRESS, WRAPPING):
        got = vm.try_ioctl(KVM_IOFD, iofd_args(base, RANGE_LEN, efd.fd, pio=pio, buffer=bad))
        assert got == errno.EFAULT, f"buffer={bad:#x}"
    vm.assign_iofd(base, RANGE_LEN, efd.fd, pio=pio)  # nothing was registered: the range is still free


@pytest.mark.parametrize("bus", BUSES)
def test_unmapped_buffer_is_accepted_at_assign(vm: Vm, efd: EventFd, bus: str) -> None:
    """Error 10: "Whether the memory is mapped is not checked here"."""
    regs = RegisterBuffer(RANGE_LEN)
    regs.unmap()
    assign(vm, efd, bus, regs)


@pytest.mark.parametrize("bus", BUSES)
def test_buffer_field_without_the_flag_is_einval(
    vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str
) -> None:
    """Error 5: "EINVAL: KVM_IOFD_FLAG_BUFFER is clear and buffer is not zero"."""
    flags = KVM_IOFD_FLAG_PIO if bus == "pio" else 0
    args = KvmIofd(addr=BASES[bus], len=RANGE_LEN, fd=efd.fd, flags=flags, buffer=buf.address)
    assert vm.try_ioctl(KVM_IOFD, args) == errno.EINVAL


@pytest.mark.parametrize("bus", BUSES)
def test_buffered_and_plain_iofds_deassign_normally(
    vm: Vm, efd: EventFd, buf: RegisterBuffer, bus: str
) -> None:
    """Deassign and lifetime: deassign matches addr, len, eventfd and bus;
    "KVM_IOFD_FLAG_BUFFER and buffer are not compared".  Afterwards writes
    to both ranges exit, and the buffer is left alone."""
    pio = bus == "pio"
    base = assign(vm, efd, bus, buf)
    other = assign(vm, efd, bus, None, base=OTHER[bus])
    vm.deassign_iofd(base, RANGE_LEN, efd.fd, pio=pio)  # no buffer given
    vm.deassign_iofd(other, RANGE_LEN, efd.fd, pio=pio)
    assert vm.try_ioctl(KVM_IOFD, iofd_args(base, RANGE_LEN, efd.fd, pio=pio, deassign=True)) == errno.ENOENT
    seen: list[Exit] = []
    result = run(vm, [Write(bus, base, 4, VALUES[4]), Write(bus, other, 4, VALUES[4])], seen.append)
    assert_exited(result, 2)
    assert [s.addr for s in seen] == [base, other]
    assert buf.bytes() == BACKGROUND
    assert efd.drain() == 0


# --- an NVMe-style doorbell array ------------------------------------------------------------------
DOORBELLS = 1024
DOORBELL_BASE = 0xA000
"""One 4 KiB page of MMIO, like an NVMe controller's doorbell page (page
aligned: every 4-byte doorbell lies inside it and no access is split)."""


def doorbell_value(i: int) -> int:
    """A distinct value per doorbell; every byte but the top one varies with i."""
    return 0xD0000000 | (i << 10) | (i ^ 0x3FF)


def test_1024_doorbells_under_one_registration(vm: Vm, efd: EventFd) -> None:
    """KVM_IOFD: one registration makes the whole range "a bank of doorbell
    registers": 1024 4-byte doorbells, each written once, each value found
    at its offset by the host and read back by the guest through the iofd,
    one signal per write, no exit."""
    with RegisterBuffer(4 * DOORBELLS) as regs:
        vm.assign_iofd(DOORBELL_BASE, 4 * DOORBELLS, efd.fd, buffer=regs.address)
        writes = [Write("mmio", DOORBELL_BASE + 4 * i, 4, doorbell_value(i)) for i in range(DOORBELLS)]
        assert_stayed_in_kernel(run(vm, writes))
        expected = [doorbell_value(i) for i in range(DOORBELLS)]
        assert [regs.load(4 * i, 4) for i in range(DOORBELLS)] == expected
        assert efd.drain() == DOORBELLS
        guest_read: list[int] = []
        for first in range(0, DOORBELLS, bank.MAX_READS):  # a program holds MAX_READS reads
            chunk = range(first, min(first + bank.MAX_READS, DOORBELLS))
            assert_stayed_in_kernel(run(vm, [Read("mmio", DOORBELL_BASE + 4 * i, 4) for i in chunk]))
            guest_read += [slot(vm, k, 4) for k in range(len(chunk))]
        assert guest_read == expected
        assert efd.drain() == 0  # reads never signal


BUS_LIMIT = 1000
"""NR_IOBUS_DEVS (include/linux/kvm_host.h); api.rst 8.48 KVM_CAP_IOFD: "a bus
holds at most 1000 devices other than ioeventfds, beyond which KVM_IOFD
fails with ENOSPC"."""


def register_each(register: Callable[[int], None], count: int) -> int:
    """Call ``register(i)`` for i in 0..count-1 until one fails with ENOSPC;
    returns how many succeeded."""
    for i in range(count):
        try:
            register(i)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, f"registration {i}: {exc}"
            return i
    return count


def test_1024_separate_iofds_are_refused_at_the_bus_limit(vm: Vm, efd: EventFd) -> None:
    """The same array as 1024 one-register iofds: kvm_io_bus_register_dev()
    (virt/kvm/kvm_main.c) returns -ENOSPC once ``dev_count - ioeventfd_count
    > NR_IOBUS_DEVS - 1``, so on this empty MMIO bus registration index 1000
    (the 1001st) is refused, and the array does not fit."""
    accepted = register_each(lambda i: vm.assign_iofd(DOORBELL_BASE + 4 * i, 4, efd.fd), DOORBELLS)
    assert accepted == BUS_LIMIT


def test_1024_separate_ioeventfds_are_not_held_to_the_bus_limit(vm: Vm, efd: EventFd) -> None:
    """The same array as 1024 4-byte ioeventfds: the bus limit does not
    apply to them.  kvm_io_bus_register_dev() (virt/kvm/kvm_main.c) checks
    ``bus->dev_count - bus->ioeventfd_count > NR_IOBUS_DEVS - 1`` ("exclude
    ioeventfd which is limited by maximum fd"), and kvm_assign_ioeventfd_idx()
    increments ioeventfd_count for each one, so all 1024 are accepted.
    They signal, but unlike the buffered iofd they keep no values."""
    accepted = register_each(lambda i: vm.ioeventfd(DOORBELL_BASE + 4 * i, 4, efd.fd), DOORBELLS)
    assert accepted == DOORBELLS
    writes = [Write("mmio", DOORBELL_BASE + 4 * i, 4, doorbell_value(i)) for i in range(DOORBELLS)]
    assert_stayed_in_kernel(run(vm, writes))
    assert efd.drain() == DOORBELLS


# --- ordering ---------------------------------------------------------------------------------------------
ORDERING_WRITES = 10**6
ORDERING_BUS = "pio"
"""PIO, because it is the faster of the two here: the counting loop ran at
about 21,000 writes/s over PIO and 16,000/s over MMIO under TCG (an OUT
exits to KVM as an IOIO intercept; an MMIO store takes a nested page fault
and a pass through KVM's instruction emulator)."""
ORDERING_TIMEOUT_S = 900.0


@dataclass
class Consumer:
    """What the consumer thread saw."""

    total: int = 0
    wakeups: int = 0
    ahead: int = 0
    """Loads that found the register past the count: the vCPU kept writing
    between the read(2) and the load, so the two really ran at once."""
    last_value: int = 0
    violations: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def consume(fd: int, regs: RegisterBuffer, n: int, seen: Consumer) -> None:
    """Block in read(2) on the eventfd; after each read, load the register
    and check it against everything counted so far."""
    while seen.total < n and not seen.stop.is_set():
        got = os.eventfd_read(fd)
        if seen.stop.is_set():
            return
        seen.total += got
        seen.wakeups += 1
        value = regs.load(0, 4)
        seen.ahead += value > seen.total
        if len(seen.violations) < 10:
            if value < seen.total:
                seen.violations.append(f"loaded {value} after reads totalling {seen.total}")
            if value < seen.last_value:
                seen.violations.append(f"loaded {value} after {seen.last_value}")
            if value > n:
                seen.violations.append(f"loaded {value} > {n}")
        seen.last_value = value


def test_consumer_never_loads_a_value_older_than_its_count(
    record_testsuite_property: RecordProperty,
) -> None:
    """Ordering: "a consumer that reads the eventfd and then loads a register
    sees the value of the write that was counted, or a later one ... if one
    vCPU writes 1, 2, 3, ... to a register, a consumer whose reads of the
    eventfd have returned N in total loads at least N".  The vCPU runs in
    this thread, the consumer in another (blocking read(2)); the count must
    end at exactly the number of writes."""
    n = ORDERING_WRITES
    addr = BASES[ORDERING_BUS]
    fd = os.eventfd(0, os.EFD_CLOEXEC)  # blocking, unlike EventFd
    seen = Consumer()
    with Vm() as machine, RegisterBuffer(4) as regs:
        consumer = threading.Thread(target=consume, args=(fd, regs, n, seen), daemon=True)
        try:
            machine.assign_iofd(addr, 4, fd, pio=ORDERING_BUS == "pio", buffer=regs.address)
            machine.load(bank.counting_loop(n, ORDERING_BUS, addr))
            vcpu = machine.create_vcpu()
            start = time.monotonic()
            consumer.start()
            result = vcpu.run_to_halt(timeout_s=ORDERING_TIMEOUT_S)
            consumer.join(timeout=60)
            wall = time.monotonic() - start
            stuck = consumer.is_alive()
        finally:
            # Release a consumer still blocked in read(2) before the
            # register's pages go away; it returns without loading them.
            seen.stop.set()
            if consumer.is_alive():
                os.eventfd_write(fd, 1)
                consumer.join(timeout=10)
            os.close(fd)
        rate = n / wall
        print(f"\nordering: {n} {ORDERING_BUS} writes in {wall:.1f} s ({rate:,.0f} writes/s), "
              f"guest {result.seconds:.1f} s, consumer woke {seen.wakeups} times, "
              f"{seen.ahead} loads ahead of the count")
        for name, value in [("ordering_seconds", round(wall, 1)), ("ordering_writes_per_s", round(rate)),
                            ("ordering_wakeups", seen.wakeups), ("ordering_loads_ahead", seen.ahead)]:
            record_testsuite_property(name, value)  # kept in the junit XML; -q output drops prints
        assert not stuck, f"the consumer stopped at a total of {seen.total} of {n}"
        assert_stayed_in_kernel(result)
        assert result.done_value == n
        assert seen.wakeups >= 1000, "the consumer hardly ran while the guest wrote: nothing was tested"
        assert seen.violations == []
        assert seen.total == n
        assert regs.load(0, 4) == n
