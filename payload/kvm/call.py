"""The one ioctl layer: a raw and a checked form of every call, as kvm_util.

kvm_util pairs each call: ``__vm_ioctl`` returns what the kernel said, and
``vm_ioctl`` asserts success naming the ioctl, after ``kvm_do_ioctl`` has
compared the argument with ``_IOC_SIZE`` of the request.  Here likewise:

* :func:`raw_ioctl` makes the syscall and returns the return value and the
  errno together (:class:`IoctlResult`), for the caller that needs both;
* :func:`try_ioctl` returns the errno alone (0 on success), for a test that
  sends what the kernel must refuse and asserts how;
* :func:`ioctl` is the checked form the VMM uses: it refuses an argument
  whose size is not the request's before any syscall
  (:class:`ArgumentSizeError`), raises :class:`OSError` naming the ioctl
  when the kernel refuses, and returns the value otherwise (a new fd, say).

The raw forms send whatever they are given, a struct of the wrong size
included: that is how the fuzzer asks for EINVAL on a bad size.
:class:`IoctlFd` gives each of the three to an object with an ``fd``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from payload.kvm.ioctl import IOC_SIZE
from payload.kvm.libc import last_error
from payload.kvm.libc import libc as _libc
from payload.kvm.uapi import ioctl_name

IoctlArg = int | ctypes.Structure | ctypes.Array
"""An integer passed by value (a capability, an address), or a ctypes
object passed by address, which the kernel may fill in (``_IOR``)."""


class ArgumentSizeError(TypeError):
    """The argument is not the size the request number encodes: the kernel
    would read or write the wrong number of bytes."""


@dataclass(frozen=True)
class IoctlResult:
    """What one ioctl(2) returned, like ``__vm_ioctl``'s int and errno."""

    request: int
    ret: int
    """The syscall's return value: -1 when refused, else e.g. a new fd."""
    errno: int
    """0 on success, else the errno the kernel refused with."""


def _pointer(arg: IoctlArg) -> int:
    """What ioctl(2)'s third argument carries: the integer, or the address."""
    return arg if isinstance(arg, int) else ctypes.addressof(arg)


def raw_ioctl(fd: int, request: int, arg: IoctlArg = 0) -> IoctlResult:
    """ioctl(2) exactly as given; never raises for the kernel's answer."""
    ret = _libc.ioctl(fd, request, _pointer(arg))
    return IoctlResult(request, ret, ctypes.get_errno() if ret < 0 else 0)


def try_ioctl(fd: int, request: int, arg: IoctlArg = 0) -> int:
    """The errno the kernel answered ``request`` with; 0 if it accepted it."""
    return raw_ioctl(fd, request, arg).errno


def _argument_sizes(arg: IoctlArg) -> set[int]:
    """The sizes C's ``sizeof(*arg)`` could mean for ``arg``: its own, and
    each base struct's, so a struct whose flexible array is filled in (it
    derives from the header, see ``uapi.cpuid2``) passes for the header.
    An integer is passed by value and has none."""
    if isinstance(arg, int):
        return {0}
    return {ctypes.sizeof(t) for t in type(arg).__mro__
            if issubclass(t, ctypes.Structure | ctypes.Array)
            and t not in (ctypes.Structure, ctypes.Array)}


def check_argument(request: int, arg: IoctlArg) -> None:
    """Raise :class:`ArgumentSizeError` unless ``arg`` is what ``request``
    encodes: a struct of ``_IOC_SIZE`` bytes, or an integer for an ``_IO``
    request (size 0)."""
    want = IOC_SIZE(request)
    if want not in _argument_sizes(arg):
        given = "an integer" if isinstance(arg, int) else (
            f"{type(arg).__name__} of {ctypes.sizeof(arg)} bytes")
        wanted = "an integer" if want == 0 else f"an argument of {want} bytes"
        raise ArgumentSizeError(f"{ioctl_name(request)} takes {wanted}, not {given}")


def ioctl(fd: int, request: int, arg: IoctlArg = 0) -> int:
    """The checked form: the syscall's return value, or OSError (its errno,
    the ioctl's name in the message; EINTR is InterruptedError)."""
    check_argument(request, arg)
    result = raw_ioctl(fd, request, arg)
    if result.errno:
        raise last_error(ioctl_name(request))  # the errno raw_ioctl just read
    return result.ret


class IoctlFd:
    """The three forms on an object's own ``fd`` (a VM's, a vCPU's)."""

    fd: int

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int:
        """Checked: see :func:`ioctl`."""
        return ioctl(self.fd, request, arg)

    def try_ioctl(self, request: int, arg: IoctlArg = 0) -> int:
        """The errno (0 on success): see :func:`try_ioctl`."""
        return try_ioctl(self.fd, request, arg)

    def raw_ioctl(self, request: int, arg: IoctlArg = 0) -> IoctlResult:
        """Return value and errno: see :func:`raw_ioctl`."""
        return raw_ioctl(self.fd, request, arg)
