"""The hypercall paths the benchmark's hc and hc-floor modes rely on (runs in the VM).

hc is upstream's in-kernel hypercall-to-eventfd path, KVM_HYPERV_EVENTFD,
driven by fast Hyper-V SIGNAL_EVENT hypercalls from 16-bit protected mode;
hc-floor is a KVM hypercall with an unknown number, answered in the kernel
with -KVM_ENOSYS.  Each test checks the path by its effect: the eventfd's
count, the status the guest saw, the iterations the guest counted, and that
KVM_RUN returned only at DONE_PORT.
"""

from __future__ import annotations

import pytest

from payload import cpu
from payload.eventfd import EventFd
from payload.guest import hypercall
from payload.guest.memmap import STATUS_ADDR
from payload.guest.programs import Program
from payload.kvm import uapi
from payload.kvm.vmm import RunResult, Vm, unavailable

TIMEOUT_S = 60.0
N = 200
CONN_ID = 7
VENDOR = cpu.vendor()


WHY_NOT = ("neither an AMD nor an Intel CPU: no known hypercall instruction"
           if VENDOR == "unknown" else
           unavailable(uapi.KVM_CAP_HYPERV_EVENTFD, "KVM_CAP_HYPERV_EVENTFD"))
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)


def run(vm: Vm, program: Program, hyperv: bool) -> tuple[RunResult, int]:
    """Run ``program``; return the result and the last hypercall status it stored."""
    vm.load(program)
    vcpu = vm.create_vcpu()
    if hyperv:
        vcpu.enable_hyperv()
    result = vcpu.run_to_halt(timeout_s=TIMEOUT_S)
    return result, int.from_bytes(vm.read(STATUS_ADDR, 4), "little")


def assert_stayed_in_kernel(result: RunResult, n: int) -> None:
    """KVM_RUN returned once, at DONE_PORT, after the guest counted n calls."""
    assert (result.exits, result.end, result.done_value) == (1, "done", n), result


def test_hv_signal_event_signals_the_bound_eventfd_each_call(vm: Vm, efd: EventFd) -> None:
    vm.hyperv_eventfd(CONN_ID, efd.fd)
    result, status = run(vm, hypercall.hv_signal_event_loop(N, CONN_ID, VENDOR), hyperv=True)
    assert_stayed_in_kernel(result, N)
    assert status == hypercall.HV_STATUS_SUCCESS
    assert efd.drain() == N


def test_hv_signal_event_for_an_unbound_connection_signals_nothing(vm: Vm, efd: EventFd) -> None:
    """The status proves the call reached KVM's Hyper-V code and was refused there:
    an unknown connection falls through to POST_MESSAGE handling (for userspace),
    which, with no SynIC active, answers HV_STATUS_INVALID_HYPERCALL_INPUT."""
    vm.hyperv_eventfd(CONN_ID, efd.fd)
    vm.hyperv_eventfd(CONN_ID, efd.fd, deassign=True)
    result, status = run(vm, hypercall.hv_signal_event_loop(N, CONN_ID, VENDOR), hyperv=True)
    assert_stayed_in_kernel(result, N)
    assert status == hypercall.HV_STATUS_INVALID_HYPERCALL_INPUT
    assert efd.drain() == 0


def test_unknown_kvm_hypercall_returns_enosys_in_the_kernel(vm: Vm) -> None:
    result, status = run(vm, hypercall.unknown_hypercall_loop(N, VENDOR), hyperv=False)
    assert_stayed_in_kernel(result, N)
    assert status == (-hypercall.KVM_ENOSYS) & 0xFFFFFFFF


def test_hyperv_eventfd_refuses_a_connection_id_over_24_bits(vm: Vm, efd: EventFd) -> None:
    with pytest.raises(OSError) as exc:
        vm.hyperv_eventfd(uapi.KVM_HYPERV_CONN_ID_MASK + 1, efd.fd)
    assert exc.value.errno == 22
