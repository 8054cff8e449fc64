"""String PIO whose device stops claiming partway: nothing is lost (patch 4).

x86's emulator reads a ``rep ins`` ahead, several elements in one call of
emulator_pio_in_out(), but hands a ``rep outs`` over one element at a
time (em_out() passes a count of 1; only SEV-ES guests send OUT strings
with a count).  Before patch 4, a bus refusal after the first element of
a call made the remaining reads return zeros, silently.  With it, the
rest of the string exits to userspace as one KVM_EXIT_IO.

The refusal has to happen between two elements of one call, which no
timing can arrange reliably, so the IN test makes it deterministic:

1. the iofd's buffer is a userfaultfd page (:class:`MissingPage`), so
   KVM's load for element 0 blocks in the fault, with kvm->srcu held;
2. a thread deassigns the iofd: it publishes the bus without the iofd,
   then waits in synchronize_srcu() for the blocked vCPU;
3. once that thread's wchan names the SRCU wait, the page is filled;
   element 0 completes from the old bus, and element 1 finds the new
   bus, where nothing claims the port.

The whole module is skipped where KVM_CAP_IOFD is 0 (an unpatched kernel);
the VM runner counts that skip as a failure.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from payload.eventfd import EventFd
from payload.guest import programs
from payload.guest.bank import SLOTS_ADDR
from payload.kvm.parking import BlockedCall, Parked
from payload.kvm.uffd import MissingPage, UffdMsg
from payload.kvm.vmm import Exit, RunResult, Vm, unavailable

PORT = 0x0700  # a free port, as in test_iofd_buffer
RANGE_LEN = 16
DEST = SLOTS_ADDR
FIRST = 0x5A  # what the buffer serves for element 0
FROM_USERSPACE = 0x77  # what the exit handler answers for the rest
POISON = 0xEE
TIMEOUT_S = 60.0
WAIT_S = 20.0

WHY_NOT = unavailable()
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)


def _recorder(seen: list[Exit], answer: int) -> Callable[[Exit], int]:
    def handler(e: Exit) -> int:
        seen.append(e)
        return answer

    return handler


def _run(vm: Vm, program: programs.Program, seen: list[Exit]) -> RunResult:
    vm.load(program)
    return vm.create_vcpu().run_to_halt(handler=_recorder(seen, FROM_USERSPACE), timeout_s=TIMEOUT_S)


class Deassigner:
    """Lets the page fault of element 0 go only once a deassign of the iofd
    is waiting for the faulting vCPU's SRCU read section: by then the bus
    without the iofd is published, and element 1 looks it up."""

    def __init__(self, vm: Vm, efd: EventFd, page: MissingPage) -> None:
        self.deassign = BlockedCall(
            lambda: vm.deassign_iofd(PORT, RANGE_LEN, efd.fd, pio=True, buffer=page.address),
            "deassign")
        self.parked = Parked(page, self._at_fault, bytes([FIRST]) * RANGE_LEN, WAIT_S)

    def _at_fault(self, msg: UffdMsg) -> None:
        self.deassign.start(WAIT_S)
        self.deassign.wait_sleeping_in("srcu", WAIT_S)


def test_rep_ins_exits_with_the_elements_a_vanished_device_did_not_serve(vm: Vm, efd: EventFd) -> None:
    """api.rst KVM_IOFD: "If the buffer cannot be accessed ... the access is
    not claimed and exits as usual, so no write is lost"; for reads, no
    element of a string is made up.  Element 0 comes from the buffer, and
    element 1, which the bus no longer claims, from userspace: one
    KVM_EXIT_IO with the remaining count."""
    vm.write(DEST, bytes([POISON, POISON]))
    with MissingPage() as page:
        vm.assign_iofd(PORT, RANGE_LEN, efd.fd, pio=True, buffer=page.address)
        d = Deassigner(vm, efd, page)
        d.parked.start()
        seen: list[Exit] = []
        result = _run(vm, programs.string_pio("in", 2, DEST, port=PORT), seen)
        d.parked.join()
        d.deassign.join(WAIT_S)
    assert d.deassign.returned.is_set() and d.parked.faults == 1
    got = vm.read(DEST, 2)
    assert got != bytes([FIRST, 0]), "element 1 was read as 0: lost in the kernel (the pre-patch-4 drop)"
    assert seen == [Exit("io", PORT, 1, False)], seen
    assert (result.exits, result.end, result.handled) == (2, "done", 1), result
    assert got == bytes([FIRST, FROM_USERSPACE])
    assert efd.drain() == 0  # reads never signal


def test_rep_ins_from_a_claimed_range_stays_in_the_kernel(vm: Vm, efd: EventFd) -> None:
    """The control: with the iofd in place the whole read-ahead is served
    from the buffer, so the test above exits only because of the deassign."""
    vm.write(DEST, bytes([POISON] * 4))
    with MissingPage() as page:
        page.resolve(bytes([FIRST]) * RANGE_LEN)
        vm.assign_iofd(PORT, RANGE_LEN, efd.fd, pio=True, buffer=page.address)
        seen: list[Exit] = []
        result = _run(vm, programs.string_pio("in", 4, DEST, port=PORT), seen)
        assert (result.exits, result.end, result.handled, seen) == (1, "done", 0, []), (result, seen)
        assert vm.read(DEST, 4) == bytes([FIRST] * 4)
        vm.deassign_iofd(PORT, RANGE_LEN, efd.fd, pio=True, buffer=page.address)


def test_rep_outs_hands_each_unclaimed_element_to_userspace(vm: Vm, efd: EventFd) -> None:
    """The OUT direction: an ioeventfd that matches 0xaa claims the first
    byte of ``rep outsb`` 0xaa, 0xbb and not the second, which must exit.
    This holds without patch 4 too (the emulator sends OUT strings one
    element at a time); the test pins that down, since patch 4's OUT half
    is reachable only from SEV-ES guests."""
    vm.write(DEST, bytes([0xAA, 0xBB]))
    vm.ioeventfd(PORT, 1, efd.fd, pio=True, datamatch=0xAA)
    seen: list[Exit] = []
    result = _run(vm, programs.string_pio("out", 2, DEST, port=PORT), seen)
    assert seen == [Exit("io", PORT, 1, True, 0xBB)], seen
    assert (result.exits, result.end, result.handled) == (2, "done", 1), result
    assert efd.drain() == 1
