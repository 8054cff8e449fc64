"""Store, then signal; deassign waits for a store in flight: shown, not raced.

api.rst (KVM_IOFD_FLAG_BUFFER) promises that a write is stored in the
buffer before its eventfd is signalled, for a consumer that read(2)s the
eventfd and for one that polls it, and that once a deassign returns no
vCPU is still storing to the buffer.  A race test cannot show either on
this VM: its vCPU thread is never preempted between KVM's store and its
signal.  So each test parks the vCPU inside the store itself
(:class:`payload.kvm.parking.Parked`: the buffer is a userfaultfd page,
and KVM's put_user() blocks in the fault) and looks from another thread
while it is parked.

Against a kernel that signals first, the eventfd is already readable at
the fault; against one whose deassign does not wait, the deassign returns
while the store is parked.  Both fail here.

Skipped where KVM_CAP_IOFD is 0 (an unpatched kernel); the VM runner counts
that skip as a failure.
"""

from __future__ import annotations

import ctypes
import select

import pytest

from payload.eventfd import EventFd
from payload.guest import programs
from payload.kvm.parking import BlockedCall, Parked
from payload.kvm.uffd import UFFD_PAGEFAULT_FLAG_WRITE, MissingPage, UffdMsg
from payload.kvm.vmm import RunResult, Vm, unavailable

PORT = 0x0700  # a free port, as in test_string_pio
RANGE_LEN = 16
OFFSET = 5
VALUE = 0x3C
BACKGROUND = bytes([0xA5]) * RANGE_LEN
TIMEOUT_S = 60.0
WAIT_S = 20.0

WHY_NOT = unavailable()
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)


def _write_once(vm: Vm) -> RunResult:
    """The guest writes VALUE to PORT + OFFSET once, then reports DONE."""
    vm.load(programs.pio_write_loop(1, 1, PORT + OFFSET, VALUE))
    return vm.create_vcpu().run_to_halt(timeout_s=TIMEOUT_S)


def _readable(fd: int) -> dict[str, bool]:
    """What each kind of consumer sees on ``fd`` without consuming: poll(2)
    and epoll(7), both with a zero timeout."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN)
        return {"poll": bool(p.poll(0)), "epoll": bool(ep.poll(0))}
    finally:
        ep.close()


def _stayed_in_kernel(result: RunResult) -> None:
    assert (result.exits, result.end, result.handled) == (1, "done", 0), result


def _buffer(page: MissingPage) -> bytes:
    return ctypes.string_at(page.address, RANGE_LEN)


def _assign(vm: Vm, efd: EventFd, page: MissingPage) -> None:
    vm.assign_iofd(PORT, RANGE_LEN, efd.fd, pio=True, buffer=page.address)


def test_the_write_is_not_signalled_while_its_store_is_parked(vm: Vm, efd: EventFd) -> None:
    """A read(2) consumer: at the fault of KVM's store, a non-blocking read
    of the eventfd finds nothing; once the store completes, the eventfd
    holds 1 and the buffer the value."""
    seen: dict[str, object] = {}

    def at_fault(msg: UffdMsg) -> None:
        seen["write_fault"] = bool(msg.flags & UFFD_PAGEFAULT_FLAG_WRITE)
        seen["count_at_fault"] = efd.drain()

    with MissingPage() as page:
        _assign(vm, efd, page)
        parked = Parked(page, at_fault, BACKGROUND, WAIT_S).start()
        result = _write_once(vm)
        parked.join()
        after = _buffer(page)
    assert parked.faults == 1 and seen["write_fault"] is True, (parked.faults, seen)
    assert seen["count_at_fault"] == 0, \
        f"the eventfd held {seen['count_at_fault']} while the store was parked: signalled first"
    _stayed_in_kernel(result)
    assert after[OFFSET] == VALUE and after[:OFFSET] + after[OFFSET + 1:] == BACKGROUND[1:], after
    assert efd.drain() == 1


def test_a_poll_consumer_sees_no_readiness_before_the_store(vm: Vm, efd: EventFd) -> None:
    """poll(2) and epoll(7), which read the count without the eventfd's
    lock: neither reports readable while the store is parked, both do
    after it, and then the buffer already holds the value."""
    seen: dict[str, dict[str, bool]] = {}

    def at_fault(msg: UffdMsg) -> None:
        seen["at_fault"] = _readable(efd.fd)

    with MissingPage() as page:
        _assign(vm, efd, page)
        parked = Parked(page, at_fault, BACKGROUND, WAIT_S).start()
        result = _write_once(vm)
        parked.join()
        seen["after"] = _readable(efd.fd)
        after = _buffer(page)
    assert seen["at_fault"] == {"poll": False, "epoll": False}, \
        f"readable while the store was parked: {seen['at_fault']}"
    assert seen["after"] == {"poll": True, "epoll": True}, seen["after"]
    _stayed_in_kernel(result)
    assert after[OFFSET] == VALUE
    assert efd.drain() == 1


def test_deassign_waits_for_a_parked_store(vm: Vm, efd: EventFd) -> None:
    """A deassign from another thread while KVM's store is parked sleeps in
    an SRCU grace period and has not returned when the store is let go;
    it returns after, and by then the store landed and was signalled."""
    seen: dict[str, object] = {}
    deassign = BlockedCall(lambda: vm.deassign_iofd(PORT, RANGE_LEN, efd.fd, pio=True,
                                                    buffer=page.address), "deassign")

    def at_fault(msg: UffdMsg) -> None:
        deassign.start(WAIT_S)
        deassign.wait_sleeping_in("srcu", WAIT_S)
        seen["wchan"] = deassign.wchan
        seen["returned_while_parked"] = deassign.returned.is_set()

    with MissingPage() as page:
        _assign(vm, efd, page)
        parked = Parked(page, at_fault, BACKGROUND, WAIT_S).start()
        result = _write_once(vm)
        parked.join()
        deassign.join(WAIT_S)
        after = _buffer(page)
    assert seen["returned_while_parked"] is False, seen
    assert "srcu" in str(seen["wchan"]), seen
    _stayed_in_kernel(result)
    assert after[OFFSET] == VALUE and efd.drain() == 1
