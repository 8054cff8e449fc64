"""The ioctl layer (payload.kvm.call) without /dev/kvm.

A pipe answers every KVM ioctl with ENOTTY and a regular file does too, so
the raw form's errno, the checked form's error and its size check can all
be seen on any machine, through the very methods a Vm and a Vcpu use.
"""

from __future__ import annotations

import ctypes
import errno
import os
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from payload.kvm import call, uapi
from payload.kvm.call import ArgumentSizeError, IoctlFd
from payload.kvm.ioctl import IOC_SIZE, IOW
from payload.kvm.libc import errno_name
from payload.kvm.vmm import Vcpu, Vm


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    os.close(r)
    os.close(w)


@pytest.fixture
def on_pipe(pipe: tuple[int, int]) -> IoctlFd:
    """An object with a VM's ioctl methods whose fd is a pipe's read end."""
    target = IoctlFd()
    target.fd = pipe[0]
    return target


def test_vm_and_vcpu_use_the_layer_s_methods() -> None:
    """So what is shown on a pipe below holds for a VM's and a vCPU's fd."""
    for method in ("ioctl", "try_ioctl", "raw_ioctl"):
        assert getattr(Vm, method) is getattr(IoctlFd, method)
        assert getattr(Vcpu, method) is getattr(IoctlFd, method)


def test_try_ioctl_returns_the_errno_of_a_refused_call(on_pipe: IoctlFd) -> None:
    assert on_pipe.try_ioctl(uapi.KVM_CHECK_EXTENSION, uapi.KVM_CAP_IOFD) == errno.ENOTTY
    assert on_pipe.try_ioctl(uapi.KVM_IOFD, uapi.iofd_args(0x1000, 4, -1)) == errno.ENOTTY


def test_try_ioctl_returns_0_for_an_accepted_call(pipe: tuple[int, int]) -> None:
    assert call.try_ioctl(pipe[0], termios.FIONREAD, ctypes.c_int()) == 0


def test_raw_ioctl_gives_the_return_value_and_the_errno(pipe: tuple[int, int], on_pipe: IoctlFd) -> None:
    """The caller that needs both (a create call's new fd, say) has both;
    an argument passed by address comes back filled in."""
    os.write(pipe[1], b"abc")
    waiting = ctypes.c_int(-1)
    got = call.raw_ioctl(pipe[0], termios.FIONREAD, waiting)
    assert (got.ret, got.errno, waiting.value) == (0, 0, 3)
    refused = on_pipe.raw_ioctl(uapi.KVM_CREATE_VCPU, 0)
    assert (refused.request, refused.ret, refused.errno) == (uapi.KVM_CREATE_VCPU, -1, errno.ENOTTY)


@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="needs /dev/kvm")
def test_both_forms_return_what_the_kernel_returned() -> None:
    """A positive return value (the API version, a new VM's fd) comes back
    from the raw and the checked form alike, without a Vm around them."""
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        assert call.raw_ioctl(kvm, uapi.KVM_GET_API_VERSION).ret == uapi.KVM_API_VERSION
        assert call.ioctl(kvm, uapi.KVM_GET_API_VERSION) == uapi.KVM_API_VERSION
        created = call.raw_ioctl(kvm, uapi.KVM_CREATE_VM, 0)
        assert created.errno == 0 and created.ret > kvm
        os.close(created.ret)
    finally:
        os.close(kvm)


def test_raw_forms_send_an_argument_of_the_wrong_size(on_pipe: IoctlFd) -> None:
    """The fuzzer's BADSIZE case: the kernel, not the layer, must answer."""
    bad = IOW(uapi.KVMIO, uapi.KVM_IOFD_NR, 24)
    assert on_pipe.try_ioctl(bad, uapi.KvmIofd()) == errno.ENOTTY
    assert on_pipe.try_ioctl(uapi.KVM_IOFD, 8) == errno.ENOTTY  # an address, as EFAULT cases send


def test_the_checked_form_raises_the_errno_naming_the_ioctl(on_pipe: IoctlFd) -> None:
    with pytest.raises(OSError, match=r"^\[Errno \d+\] KVM_IOFD: ") as excinfo:
        on_pipe.ioctl(uapi.KVM_IOFD, uapi.iofd_args(0x1000, 4, -1))
    assert excinfo.value.errno == errno.ENOTTY


def test_a_vm_on_a_file_that_is_not_kvm_names_the_first_ioctl(tmp_path: Path) -> None:
    """Vm's own path: its first ioctl is refused, and says which it was."""
    not_kvm = tmp_path / "kvm"
    not_kvm.write_bytes(b"")
    with pytest.raises(OSError, match="KVM_GET_API_VERSION") as excinfo:
        Vm(kvm_path=str(not_kvm))
    assert excinfo.value.errno == errno.ENOTTY


def test_the_checked_form_interrupted_is_interruptederror(monkeypatch: pytest.MonkeyPatch,
                                                          on_pipe: IoctlFd) -> None:
    """run_to_halt counts a KVM_RUN that a signal ended by catching this."""
    def interrupted(fd: int, request: int, arg: call.IoctlArg = 0) -> call.IoctlResult:
        ctypes.set_errno(errno.EINTR)  # as a signal during the syscall leaves it
        return call.IoctlResult(request, -1, errno.EINTR)

    monkeypatch.setattr(call, "raw_ioctl", interrupted)
    with pytest.raises(InterruptedError, match="KVM_RUN"):
        on_pipe.ioctl(uapi.KVM_RUN)


@pytest.mark.parametrize(
    ("request_", "arg", "message"),
    [
        (uapi.KVM_GET_REGS, uapi.KvmSregs(), "KVM_GET_REGS takes an argument of 144 bytes, not KvmSregs"),
        (uapi.KVM_IOFD, uapi.KvmIoeventfd(), "KVM_IOFD takes an argument of 32 bytes, not KvmIoeventfd"),
        (uapi.KVM_IOFD, 0x1000, "KVM_IOFD takes an argument of 32 bytes, not an integer"),
        (uapi.KVM_RUN, uapi.KvmRegs(), "KVM_RUN takes an integer, not KvmRegs"),
        (uapi.KVM_SET_MSRS, (ctypes.c_uint8 * 9)(),
         "KVM_SET_MSRS takes an argument of 8 bytes, not .* of 9 bytes"),
    ],
)
def test_the_checked_form_refuses_an_argument_of_the_wrong_size(
    on_pipe: IoctlFd, request_: int, arg: call.IoctlArg, message: str
) -> None:
    with pytest.raises(ArgumentSizeError, match=message):
        on_pipe.ioctl(request_, arg)


def test_the_size_check_comes_before_any_syscall() -> None:
    """On fd -1 the syscall would fail with EBADF; the size error comes first."""
    with pytest.raises(ArgumentSizeError):
        call.ioctl(-1, uapi.KVM_SET_REGS, uapi.KvmSregs())
    assert call.try_ioctl(-1, uapi.KVM_SET_REGS, uapi.KvmRegs()) == errno.EBADF


@pytest.mark.parametrize(
    ("request_", "arg"),
    [
        (uapi.KVM_SET_CPUID2, uapi.cpuid2(3)),
        (uapi.KVM_GET_SUPPORTED_HV_CPUID, uapi.cpuid2(64)),
        (uapi.KVM_SET_MSRS, uapi.msrs({0x40000000: 1, 0x10: 2})),
        (uapi.KVM_IOFD, uapi.iofd_args(0, 1, 0)),
        (uapi.KVM_CHECK_EXTENSION, uapi.KVM_CAP_IOFD),
    ],
)
def test_the_size_check_passes_what_the_vmm_sends(request_: int, arg: call.IoctlArg) -> None:
    """A struct with its flexible array filled in passes for its header, as
    the C caller's ``struct kvm_cpuid2 *`` does."""
    call.check_argument(request_, arg)


def test_flexible_arrays_follow_their_header() -> None:
    arg = uapi.cpuid2(2)
    assert isinstance(arg, uapi.KvmCpuid2) and arg.nent == 2
    assert type(arg).entries.offset == ctypes.sizeof(uapi.KvmCpuid2)
    m = uapi.msrs({0x10: 5})
    assert (m.nmsrs, m.entries[0].index, m.entries[0].data) == (1, 0x10, 5)
    assert type(m).entries.offset == ctypes.sizeof(uapi.KvmMsrs)


def test_every_ioctl_has_one_name() -> None:
    assert len(uapi.IOCTL_NAMES) == len(uapi.IOCTLS)
    assert uapi.ioctl_name(uapi.KVM_IOFD) == "KVM_IOFD"
    assert uapi.ioctl_name(IOW(uapi.KVMIO, uapi.KVM_IOFD_NR, 24)) == "ioctl 0x4018aedb"


def test_ioc_size_undoes_the_encoding() -> None:
    assert IOC_SIZE(uapi.KVM_IOFD) == ctypes.sizeof(uapi.KvmIofd) == 32
    assert IOC_SIZE(uapi.KVM_RUN) == 0


def test_iofd_args_set_the_flags_the_typed_calls_mean() -> None:
    args = uapi.iofd_args(0x61, 4, 7, pio=True, deassign=True, buffer=0x1000)
    assert (args.addr, args.len, args.fd, args.buffer, bytes(args.pad)) == (0x61, 4, 7, 0x1000, bytes(4))
    assert args.flags == uapi.KVM_IOFD_FLAG_PIO | uapi.KVM_IOFD_FLAG_DEASSIGN | uapi.KVM_IOFD_FLAG_BUFFER
    assert uapi.iofd_args(0, 1, 0, buffer=0).flags == uapi.KVM_IOFD_FLAG_BUFFER
    assert uapi.iofd_args(0, 1, 0).flags == 0


def test_errno_name() -> None:
    assert (errno_name(0), errno_name(errno.ENOENT), errno_name(4095)) == ("ok", "ENOENT", "4095")
