"""KVM_IOFD end to end; runs as root inside the test VM on the patched kernel.

Every claim is checked with exact counts: an eventfd's counter (read
non-blocking) says how many writes the kernel signalled, and the VMM's
RunResult says how many times KVM_RUN returned.  Each guest program ends
with one write to DONE_PORT, so "all N writes stayed in the kernel" is
``exits == 1`` and "all N exited" is ``exits == N + 1``.

The whole module is skipped where KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is 0
(an unpatched kernel).  Tests that need the doorbell module skip unless
/dev/doorbell exists.  The VM is slow (nested KVM under TCG), so N is small.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from payload.doorbell import DOORBELL_RING, Doorbell
from payload.eventfd import EventFd
from payload.guest import programs
from payload.guest.programs import Access, Program
from payload.kvm import uapi
from payload.kvm.uapi import KVM_IOEVENTFD, KVM_IOFD, KvmIofd, ioeventfd_args, iofd_args
from payload.kvm.vmm import Exit, RunResult, Vm, unavailable
from payload.native import run_native

N = 20
SIZES = (1, 2, 4)
TIMEOUT_S = 60.0

RANGE_LEN = 8
PIO_BASE = 0x0700
# Unbacked (inside programs' [MMIO_BASE, 0x10000) window) and NOT page aligned:
# KVM's emulator splits an MMIO access that crosses a page boundary into one
# access per page, so a write straddling a page-aligned range start would
# reach the range as a separate, fully contained 1-byte write.
MMIO_BASE = 0x9100
BASES = {"pio": PIO_BASE, "mmio": MMIO_BASE}
OTHER = {"pio": 0x0780, "mmio": 0xA000}  # a second, disjoint address per bus

DOORBELL_PATH = "/dev/doorbell"

BUS_LIMIT = 1000
"""api.rst 8.48 KVM_CAP_IOFD: a bus holds at most 1000 devices other than
ioeventfds (NR_IOBUS_DEVS), beyond which KVM_IOFD fails with ENOSPC."""
FILL_BASE = {"pio": 0x1000, "mmio": 0xD000}
"""Where the bus-limit test puts BUS_LIMIT 1-byte iofds: clear of BASES and
OTHER, and inside what a guest program reaches."""


WHY_NOT = unavailable()
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)


# --- fixtures ----------------------------------------------------------------------
@pytest.fixture
def efd2() -> Iterator[EventFd]:
    fd = EventFd()
    yield fd
    fd.close()


@pytest.fixture
def doorbell() -> Iterator[Doorbell]:
    if not os.path.exists(DOORBELL_PATH):
        pytest.skip(f"{DOORBELL_PATH} does not exist (doorbell module not loaded)")
    bell = Doorbell.open(DOORBELL_PATH)
    yield bell
    bell.close()


# --- helpers ---------------------------------------------------------------------------
@dataclass
class Recorder:
    """A handler that records exits and answers reads with a marker value."""

    read_value: int = 0x5A5A5A5A
    seen: list[Exit] = field(default_factory=list)

    def __call__(self, exit_: Exit) -> int:
        self.seen.append(exit_)
        return self.read_value


def run(vm: Vm, program: Program, handler: Callable[[Exit], int | None] | None = None) -> RunResult:
    vm.load(program)
    return vm.create_vcpu().run_to_halt(handler=handler, timeout_s=TIMEOUT_S)


def assert_stayed_in_kernel(result: RunResult) -> None:
    """KVM_RUN returned exactly once: at the DONE_PORT write."""
    assert (result.exits, result.end, result.handled) == (1, "done", 0), result


def assert_all_exited(result: RunResult, n: int) -> None:
    assert (result.exits, result.end, result.handled) == (n + 1, "done", n), result


def write_loop(bus: str, n: int, size: int, addr: int) -> Program:
    if bus == "pio":
        return programs.pio_write_loop(n, size, port=addr)
    return programs.mmio_write_loop(n, size, addr=addr)


def read_loop(bus: str, n: int, size: int, addr: int) -> Program:
    if bus == "pio":
        return programs.pio_read_loop(n, size, port=addr)
    return programs.mmio_read_loop(n, size, addr=addr)


def mask(size: int) -> int:
    return (1 << 8 * size) - 1


BUSES = ("pio", "mmio")


# --- the capability ----------------------------------------------------------------------
def test_capability_is_1(vm: Vm) -> None:
    """api.rst 8.48: the capability says KVM_IOFD exists and returns 1; it is
    not a count (v1 returned its per-VM limit, 256)."""
    assert vm.check_extension(uapi.KVM_CAP_IOFD) == 1


# --- writes and reads inside a range --------------------------------------------------------
@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize("size", SIZES)
def test_writes_signal_once_each_without_exiting(vm: Vm, efd: EventFd, bus: str, size: int) -> None:
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=bus == "pio")
    result = run(vm, write_loop(bus, N, size, BASES[bus]))
    assert_stayed_in_kernel(result)
    assert efd.drain() == N


@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize("size", SIZES)
def test_reads_return_zero_without_exiting(vm: Vm, efd: EventFd, bus: str, size: int) -> None:
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=bus == "pio")
    result = run(vm, read_loop(bus, N, size, BASES[bus]))
    assert_stayed_in_kernel(result)
    assert result.done_value == 0  # OR of every value read (EAX poisoned before each)
    assert efd.drain() == 0  # reads never signal


@pytest.mark.parametrize("bus", BUSES)
def test_writes_anywhere_in_the_range_signal(vm: Vm, efd: EventFd, bus: str) -> None:
    base = BASES[bus]
    accesses = [Access(bus, base + off, 1) for off in range(RANGE_LEN)]
    accesses += [Access(bus, base + off, 4) for off in range(RANGE_LEN - 3)]
    vm.assign_iofd(base, RANGE_LEN, efd.fd, pio=bus == "pio")
    assert_stayed_in_kernel(run(vm, programs.access_sequence(accesses)))
    assert efd.drain() == len(accesses)


# --- range edges -------------------------------------------------------------------------------
EDGE_CASES = [
    # (offset from base, size, claimed by the iofd?)
    *((0, size, True) for size in SIZES),  # first byte, every size
    (RANGE_LEN - 1, 1, True),  # last byte
    (RANGE_LEN - 1, 2, False),  # straddles the end
    (RANGE_LEN - 1, 4, False),
    (RANGE_LEN - 2, 4, False),
    (-1, 1, False),  # one byte before
    (-1, 2, False),  # straddles the start
    (RANGE_LEN, 1, False),  # one byte after
]


@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize(
    ("offset", "size", "claimed"),
    EDGE_CASES,
    ids=[f"off{o:+d}-size{s}-{'kernel' if c else 'exit'}" for o, s, c in EDGE_CASES],
)
def test_write_at_range_edge(vm: Vm, efd: EventFd, bus: str, offset: int, size: int, claimed: bool) -> None:
    addr = BASES[bus] + offset
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=bus == "pio")
    recorder = Recorder()
    result = run(vm, programs.access_sequence([Access(bus, addr, size)]), recorder)
    if claimed:
        assert_stayed_in_kernel(result)
        assert efd.drain() == 1
    else:
        assert_all_exited(result, 1)
        assert efd.drain() == 0
        kind = "io" if bus == "pio" else "mmio"
        assert recorder.seen == [Exit(kind, addr, size, True, programs.PATTERN & mask(size))]


@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize(
    ("offset", "size", "claimed"),
    EDGE_CASES,
    ids=[f"off{o:+d}-size{s}-{'kernel' if c else 'exit'}" for o, s, c in EDGE_CASES],
)
def test_read_at_range_edge(vm: Vm, efd: EventFd, bus: str, offset: int, size: int, claimed: bool) -> None:
    addr = BASES[bus] + offset
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=bus == "pio")
    recorder = Recorder()
    result = run(vm, programs.access_sequence([Access(bus, addr, size, write=False)]), recorder)
    if claimed:
        assert_stayed_in_kernel(result)
        assert result.done_value == 0
    else:
        assert_all_exited(result, 1)
        assert result.done_value == recorder.read_value & mask(size)  # userspace answered
    assert efd.drain() == 0


# --- deassign --------------------------------------------------------------------------------
@pytest.mark.parametrize("bus", BUSES)
def test_deassign_returns_writes_to_userspace(vm: Vm, efd: EventFd, bus: str) -> None:
    pio = bus == "pio"
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
    vm.deassign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
    recorder = Recorder()
    result = run(vm, write_loop(bus, N, 2, BASES[bus]), recorder)
    assert_all_exited(result, N)
    assert len(recorder.seen) == N
    assert efd.drain() == 0


@pytest.mark.parametrize("bus", BUSES)
def test_reassign_after_deassign(vm: Vm, efd: EventFd, bus: str) -> None:
    pio = bus == "pio"
    for _ in range(3):
        vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
        vm.deassign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
    assert_stayed_in_kernel(run(vm, write_loop(bus, N, 1, BASES[bus])))
    assert efd.drain() == N


# --- error codes -----------------------------------------------------------------------------
@pytest.mark.parametrize("bus", BUSES)
def test_invalid_arguments_are_einval(vm: Vm, efd: EventFd, bus: str) -> None:
    pio = bus == "pio"
    base = BASES[bus]
    bus_flag = uapi.KVM_IOFD_FLAG_PIO if pio else 0
    cases: dict[str, KvmIofd] = {
        # Bit 2 is KVM_IOFD_FLAG_BUFFER since v2: bit 3 is the lowest unknown one.
        "unknown flag bit 3": KvmIofd(addr=base, len=4, fd=efd.fd, flags=bus_flag | 1 << 3),
        "unknown flag bit 31": KvmIofd(addr=base, len=4, fd=efd.fd, flags=bus_flag | 1 << 31),
        "pad[0] != 0": KvmIofd(addr=base, len=4, fd=efd.fd, flags=bus_flag, pad=(1, 0, 0, 0)),
        "pad[3] != 0": KvmIofd(addr=base, len=4, fd=efd.fd, flags=bus_flag, pad=(0, 0, 0, 0x80)),
        # api.rst 4.146 error 5: without KVM_IOFD_FLAG_BUFFER, buffer must be 0.
        "buffer without the flag": KvmIofd(addr=base, len=4, fd=efd.fd, flags=bus_flag, buffer=1),
        "kernel buffer without the flag": KvmIofd(
            addr=base, len=4, fd=efd.fd, flags=bus_flag, buffer=0xFFFF800000000000
        ),
        "len 0": iofd_args(base, 0, efd.fd, pio=pio),
        "addr + len overflows": iofd_args((1 << 64) - 1, 2, efd.fd, pio=pio),
    }
    if pio:
        cases["PIO range past 0xffff"] = iofd_args(0xFFFF, 2, efd.fd, pio=True)
        cases["PIO addr past 0xffff"] = iofd_args(0x10000, 1, efd.fd, pio=True)
    got = {name: vm.try_ioctl(KVM_IOFD, args) for name, args in cases.items()}
    assert got == dict.fromkeys(cases, errno.EINVAL)


def test_pio_range_may_end_at_the_last_port(vm: Vm, efd: EventFd) -> None:
    vm.assign_iofd(0xFFFF, 1, efd.fd, pio=True)
    vm.assign_iofd(0xFFF0, 15, efd.fd, pio=True)
    vm.deassign_iofd(0xFFFF, 1, efd.fd, pio=True)


def test_invalid_flags_are_einval_on_deassign_too(vm: Vm, efd: EventFd) -> None:
    vm.assign_iofd(MMIO_BASE, 4, efd.fd)
    bad_pad = KvmIofd(addr=MMIO_BASE, len=4, fd=efd.fd, flags=uapi.KVM_IOFD_FLAG_DEASSIGN, pad=(1, 0, 0, 0))
    assert vm.try_ioctl(KVM_IOFD, bad_pad) == errno.EINVAL
    vm.deassign_iofd(MMIO_BASE, 4, efd.fd)  # still registered, so this succeeds


def test_bad_fds(vm: Vm) -> None:
    read_end, write_end = os.pipe()
    closed = os.dup(read_end)
    os.close(closed)
    try:
        assert vm.try_ioctl(KVM_IOFD, iofd_args(MMIO_BASE, 4, -1)) == errno.EBADF
        assert vm.try_ioctl(KVM_IOFD, iofd_args(MMIO_BASE, 4, closed)) == errno.EBADF
        assert vm.try_ioctl(KVM_IOFD, iofd_args(MMIO_BASE, 4, read_end)) == errno.EINVAL  # not an eventfd
        assert vm.try_ioctl(KVM_IOFD, iofd_args(PIO_BASE, 4, write_end, pio=True)) == errno.EINVAL
        assert vm.try_ioctl(KVM_IOFD, iofd_args(MMIO_BASE, 4, -1, deassign=True)) == errno.EBADF
    finally:
        os.close(read_end)
        os.close(write_end)


OVERLAPS = [
    (0, RANGE_LEN),  # identical
    (-4, 8),  # covers the start
    (RANGE_LEN - 1, 4),  # covers the end
    (2, 2),  # inside
    (-4, RANGE_LEN + 8),  # contains
]


@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize(("offset", "length"), OVERLAPS)
def test_overlapping_iofd_is_eexist(
    vm: Vm, efd: EventFd, efd2: EventFd, bus: str, offset: int, length: int
) -> None:
    pio = bus == "pio"
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
    for fd in (efd.fd, efd2.fd):  # same or another eventfd: the range is taken
        assert vm.try_ioctl(KVM_IOFD, iofd_args(BASES[bus] + offset, length, fd, pio=pio)) == errno.EEXIST


@pytest.mark.parametrize("bus", BUSES)
def test_adjacent_ranges_and_other_bus_do_not_overlap(vm: Vm, efd: EventFd, efd2: EventFd, bus: str) -> None:
    pio = bus == "pio"
    base = BASES[bus]
    vm.assign_iofd(base, RANGE_LEN, efd.fd, pio=pio)
    vm.assign_iofd(base + RANGE_LEN, RANGE_LEN, efd2.fd, pio=pio)  # right after
    vm.assign_iofd(base - RANGE_LEN, RANGE_LEN, efd2.fd, pio=pio)  # right before
    vm.assign_iofd(base, RANGE_LEN, efd2.fd, pio=not pio)  # same numbers, other bus
    result = run(
        vm,
        programs.access_sequence([Access(bus, base + RANGE_LEN - 1, 1), Access(bus, base + RANGE_LEN, 1)]),
    )
    assert_stayed_in_kernel(result)
    assert (efd.drain(), efd2.drain()) == (1, 1)  # each write went to its own range


@pytest.mark.parametrize("bus", BUSES)
def test_bus_limit_is_enospc_per_bus_and_per_vm(vm: Vm, efd: EventFd, bus: str) -> None:
    """A fresh VM (no irqchip, so nothing else on its buses) takes exactly
    BUS_LIMIT 1-byte iofds on one bus, then ENOSPC.  The other bus and
    another VM are not affected, a deassign frees exactly one place, and
    ioeventfds do not count against the limit."""
    pio = bus == "pio"
    other_bus = "mmio" if pio else "pio"
    base = FILL_BASE[bus]
    registered = 0
    for i in range(BUS_LIMIT + 1):
        try:
            vm.assign_iofd(base + i, 1, efd.fd, pio=pio)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, f"iofd #{i}: {exc}"
            break
        registered += 1
    assert registered == BUS_LIMIT, "ENOSPC must come at exactly the bus limit, on an empty bus"
    spare = base + BUS_LIMIT + 8  # free and not adjacent
    assert vm.try_ioctl(KVM_IOFD, iofd_args(spare, 1, efd.fd, pio=pio)) == errno.ENOSPC
    assert vm.try_ioctl(KVM_IOFD, iofd_args(base, 1, efd.fd, pio=pio)) == errno.EEXIST  # EEXIST comes first
    vm.assign_iofd(BASES[other_bus], RANGE_LEN, efd.fd, pio=not pio)  # the other bus still accepts
    with Vm() as other:  # and so does another VM's bus
        other.assign_iofd(spare, 1, efd.fd, pio=pio)
    # Deassign one: exactly one more fits.
    vm.deassign_iofd(base + 7, 1, efd.fd, pio=pio)
    vm.assign_iofd(spare, 1, efd.fd, pio=pio)
    assert vm.try_ioctl(KVM_IOFD, iofd_args(spare + 2, 1, efd.fd, pio=pio)) == errno.ENOSPC
    # Ioeventfds do not count: with one in the freed place, an iofd still fits.
    vm.deassign_iofd(spare, 1, efd.fd, pio=pio)
    vm.ioeventfd(base + 7, 1, efd.fd, pio=pio)
    vm.assign_iofd(spare, 1, efd.fd, pio=pio)
    assert vm.try_ioctl(KVM_IOFD, iofd_args(spare + 2, 1, efd.fd, pio=pio)) == errno.ENOSPC
    # The full bus still dispatches: the last iofd and the ioeventfd take their writes.
    efd.drain()
    accesses = [Access(bus, base + BUS_LIMIT - 1, 1), Access(bus, base + 7, 1)]
    assert_stayed_in_kernel(run(vm, programs.access_sequence(accesses)))
    assert efd.drain() == 2


@pytest.mark.parametrize("bus", BUSES)
def test_deassign_of_unassigned_is_enoent(vm: Vm, efd: EventFd, efd2: EventFd, bus: str) -> None:
    pio = bus == "pio"
    base = BASES[bus]
    assert vm.try_ioctl(KVM_IOFD, iofd_args(base, RANGE_LEN, efd.fd, pio=pio, deassign=True)) == errno.ENOENT
    vm.assign_iofd(base, RANGE_LEN, efd.fd, pio=pio)
    mismatches: dict[str, KvmIofd] = {
        "addr": iofd_args(base + 1, RANGE_LEN, efd.fd, pio=pio, deassign=True),
        "len": iofd_args(base, RANGE_LEN - 1, efd.fd, pio=pio, deassign=True),
        "eventfd": iofd_args(base, RANGE_LEN, efd2.fd, pio=pio, deassign=True),
        "bus": iofd_args(base, RANGE_LEN, efd.fd, pio=not pio, deassign=True),
    }
    got = {name: vm.try_ioctl(KVM_IOFD, args) for name, args in mismatches.items()}
    assert got == dict.fromkeys(mismatches, errno.ENOENT)
    vm.deassign_iofd(base, RANGE_LEN, efd.fd, pio=pio)  # the real one is still there
    assert vm.try_ioctl(KVM_IOFD, iofd_args(base, RANGE_LEN, efd.fd, pio=pio, deassign=True)) == errno.ENOENT


def test_deassign_matches_the_eventfd_not_the_fd_number(vm: Vm, efd: EventFd) -> None:
    vm.assign_iofd(MMIO_BASE, RANGE_LEN, efd.fd)
    dup = os.dup(efd.fd)
    try:
        vm.deassign_iofd(MMIO_BASE, RANGE_LEN, dup)
    finally:
        os.close(dup)


# --- coexistence with KVM_IOEVENTFD -----------------------------------------------------------
@pytest.mark.parametrize("bus", BUSES)
def test_iofd_and_ioeventfd_on_different_addresses(vm: Vm, efd: EventFd, efd2: EventFd, bus: str) -> None:
    pio = bus == "pio"
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
    vm.ioeventfd(OTHER[bus], 2, efd2.fd, pio=pio)
    accesses = [Access(bus, BASES[bus] + 1, 2), Access(bus, OTHER[bus], 2)] * N
    assert_stayed_in_kernel(run(vm, programs.access_sequence(accesses)))
    assert (efd.drain(), efd2.drain()) == (N, N)


@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize("ioeventfd_len", [1, 2, 4, 0])
def test_ioeventfd_inside_iofd_is_eexist(
    vm: Vm, efd: EventFd, efd2: EventFd, bus: str, ioeventfd_len: int
) -> None:
    pio = bus == "pio"
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=pio)
    for offset in (0, RANGE_LEN - 1):
        args = ioeventfd_args(BASES[bus] + offset, ioeventfd_len, efd2.fd, pio=pio)
        assert vm.try_ioctl(KVM_IOEVENTFD, args) == errno.EEXIST


@pytest.mark.parametrize("bus", BUSES)
def test_iofd_over_ioeventfd_is_eexist(vm: Vm, efd: EventFd, efd2: EventFd, bus: str) -> None:
    pio = bus == "pio"
    vm.ioeventfd(BASES[bus] + 3, 1, efd2.fd, pio=pio)
    assert vm.try_ioctl(KVM_IOFD, iofd_args(BASES[bus], RANGE_LEN, efd.fd, pio=pio)) == errno.EEXIST
    vm.assign_iofd(BASES[bus] + 4, 4, efd.fd, pio=pio)  # right after it is fine
    vm.assign_iofd(BASES[bus] - 1, 4, efd.fd, pio=pio)  # right before it is fine


@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize("size", SIZES)
def test_mainline_ioeventfd_wildcard_still_exact(vm: Vm, efd: EventFd, bus: str, size: int) -> None:
    vm.ioeventfd(BASES[bus], size, efd.fd, pio=bus == "pio")
    assert_stayed_in_kernel(run(vm, write_loop(bus, N, size, BASES[bus])))
    assert efd.drain() == N


def test_mainline_ioeventfd_any_length_mmio(vm: Vm, efd: EventFd) -> None:
    vm.ioeventfd(MMIO_BASE, 0, efd.fd)
    assert_stayed_in_kernel(run(vm, programs.mmio_write_loop(N, 4, addr=MMIO_BASE)))
    assert efd.drain() == N


# --- the userspace baseline --------------------------------------------------------------------
@pytest.mark.parametrize("bus", BUSES)
def test_baseline_every_write_exits_once(vm: Vm, bus: str) -> None:
    recorder = Recorder()
    result = run(vm, write_loop(bus, N, 4, BASES[bus]), recorder)
    assert_all_exited(result, N)
    assert len(recorder.seen) == N


@pytest.mark.parametrize("bus", BUSES)
def test_baseline_handler_rings_the_doorbell(vm: Vm, doorbell: Doorbell, bus: str) -> None:
    doorbell.reset()
    result = run(vm, write_loop(bus, N, 4, BASES[bus]), lambda e: doorbell.ring())
    assert_all_exited(result, N)
    assert doorbell.count == N


@pytest.mark.parametrize("bus", BUSES)
def test_native_baseline_rings_the_doorbell(vm: Vm, doorbell: Doorbell, bus: str) -> None:
    doorbell.reset()
    vm.load(write_loop(bus, N, 4, BASES[bus]))
    result = run_native(
        vm.create_vcpu(),
        ring_fd=doorbell.fileno(),
        ring_cmd=DOORBELL_RING,
        timeout_s=TIMEOUT_S,
    )
    assert (result.exits, result.rings, result.end) == (N + 1, N, "done")
    assert doorbell.count == N


@pytest.mark.parametrize("bus", BUSES)
def test_iofd_feeds_the_doorbell_in_kernel(vm: Vm, efd: EventFd, doorbell: Doorbell, bus: str) -> None:
    """The point of the series: guest writes reach the device model with no exit."""
    doorbell.reset()
    doorbell.attach(efd.fd)
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=bus == "pio")
    vm.load(write_loop(bus, N, 4, BASES[bus]))
    result = run_native(vm.create_vcpu(), timeout_s=TIMEOUT_S)
    assert (result.exits, result.end) == (1, "done")
    assert doorbell.count == N


@pytest.mark.parametrize("bus", BUSES)
def test_native_loop_with_iofd_exits_once(vm: Vm, efd: EventFd, bus: str) -> None:
    vm.assign_iofd(BASES[bus], RANGE_LEN, efd.fd, pio=bus == "pio")
    vm.load(write_loop(bus, N, 2, BASES[bus]))
    result = run_native(vm.create_vcpu(), timeout_s=TIMEOUT_S)
    assert (result.exits, result.device_exits, result.end) == (1, 0, "done")
    assert efd.drain() == N
