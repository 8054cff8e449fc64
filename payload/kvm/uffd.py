"""userfaultfd(2): user memory whose first touch waits for the test.

A KVM_IOFD buffer is user memory that KVM loads and stores from inside
KVM_RUN, with kvm->srcu held.  To stop a vCPU at an exact point of that
path (the first element of a string PIO, a store before its signal), a
test backs the buffer with a userfaultfd page: the kernel's first access
blocks in handle_userfault() until the test resolves it with UFFDIO_COPY,
and the test can act in between.  Nothing here depends on timing.

Kernel-mode faults are delivered only to a userfaultfd created without
UFFD_USER_MODE_ONLY, by a caller with CAP_SYS_PTRACE or with
vm.unprivileged_userfaultfd set; the VM suite runs as root.

Numbers and layouts mirror ``include/uapi/linux/userfaultfd.h``;
:data:`LAYOUT` lets a host test compare them with a C compiler's view, as
``payload.kvm.uapi.LAYOUT`` does for KVM.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import select
from ctypes import c_int64, c_uint8, c_uint16, c_uint32, c_uint64

from payload.kvm.call import try_ioctl
from payload.kvm.ioctl import IOR, IOWR
from payload.kvm.libc import last_error, mapped
from payload.kvm.libc import libc as _libc

SYS_userfaultfd = 323
"""x86-64's syscall number (the payload runs on x86-64 only)."""

UFFD_API = 0xAA
UFFDIO = 0xAA
UFFDIO_REGISTER_MODE_MISSING = 1 << 0
UFFD_EVENT_PAGEFAULT = 0x12
UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0


class UffdioApi(ctypes.Structure):
    _fields_ = [("api", c_uint64), ("features", c_uint64), ("ioctls", c_uint64)]


class UffdioRange(ctypes.Structure):
    _fields_ = [("start", c_uint64), ("len", c_uint64)]


class UffdioRegister(ctypes.Structure):
    _fields_ = [("range", UffdioRange), ("mode", c_uint64), ("ioctls", c_uint64)]


class UffdioCopy(ctypes.Structure):
    _fields_ = [("dst", c_uint64), ("src", c_uint64), ("len", c_uint64), ("mode", c_uint64),
                ("copy", c_int64)]


class UffdMsg(ctypes.Structure):
    """struct uffd_msg, with only the pagefault member of its union spelled out
    (the union is 24 bytes: flags, address and the 4-byte ptid, padded)."""

    _fields_ = [("event", c_uint8), ("reserved1", c_uint8), ("reserved2", c_uint16),
                ("reserved3", c_uint32), ("flags", c_uint64), ("address", c_uint64),
                ("ptid", c_uint32), ("_pad", c_uint32)]


UFFDIO_API = IOWR(UFFDIO, 0x3F, UffdioApi)
UFFDIO_REGISTER = IOWR(UFFDIO, 0x00, UffdioRegister)
UFFDIO_UNREGISTER = IOR(UFFDIO, 0x01, UffdioRange)
UFFDIO_COPY = IOWR(UFFDIO, 0x03, UffdioCopy)

LAYOUT: dict[str, int] = {
    "UFFD_API": UFFD_API,
    "UFFDIO_REGISTER_MODE_MISSING": UFFDIO_REGISTER_MODE_MISSING,
    "UFFD_EVENT_PAGEFAULT": UFFD_EVENT_PAGEFAULT,
    "UFFD_PAGEFAULT_FLAG_WRITE": UFFD_PAGEFAULT_FLAG_WRITE,
    "UFFDIO_API": UFFDIO_API,
    "UFFDIO_REGISTER": UFFDIO_REGISTER,
    "UFFDIO_UNREGISTER": UFFDIO_UNREGISTER,
    "UFFDIO_COPY": UFFDIO_COPY,
    "__NR_userfaultfd": SYS_userfaultfd,
    "sizeof(struct uffdio_api)": ctypes.sizeof(UffdioApi),
    "sizeof(struct uffdio_register)": ctypes.sizeof(UffdioRegister),
    "sizeof(struct uffdio_copy)": ctypes.sizeof(UffdioCopy),
    "sizeof(struct uffd_msg)": ctypes.sizeof(UffdMsg),
    "offsetof(struct uffdio_register, mode)": UffdioRegister.mode.offset,
    "offsetof(struct uffdio_copy, copy)": UffdioCopy.copy.offset,
    "offsetof(struct uffd_msg, arg.pagefault.flags)": UffdMsg.flags.offset,
    "offsetof(struct uffd_msg, arg.pagefault.address)": UffdMsg.address.offset,
}
"""C expression -> value, for the host test that compiles them against
<linux/userfaultfd.h> (tests/host/test_uffd_layout.py)."""

_libc.syscall.restype = ctypes.c_long


class MissingPage:
    """One anonymous page, registered for missing-page faults and never
    touched, so the first access to it, from userspace or the kernel,
    waits until :meth:`resolve` fills it."""

    def __init__(self) -> None:
        self.size = mmap.PAGESIZE
        fd = _libc.syscall(SYS_userfaultfd, os.O_CLOEXEC | os.O_NONBLOCK)
        if fd < 0:
            raise last_error("userfaultfd")
        self.fd = int(fd)
        self.address = 0
        try:
            api = UffdioApi(api=UFFD_API)
            self._check(UFFDIO_API, api, "UFFDIO_API")
            addr = _libc.mmap(None, self.size, mmap.PROT_READ | mmap.PROT_WRITE,
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
            if not mapped(addr):
                raise last_error("mmap")
            self.address = int(addr)
            reg = UffdioRegister(range=UffdioRange(self.address, self.size),
                                 mode=UFFDIO_REGISTER_MODE_MISSING)
            self._check(UFFDIO_REGISTER, reg, "UFFDIO_REGISTER")
        except BaseException:
            self.close()
            raise

    def _check(self, request: int, arg: ctypes.Structure, name: str) -> None:
        err = try_ioctl(self.fd, request, arg)
        if err:
            raise OSError(err, f"{name}: {os.strerror(err)}")

    def wait_fault(self, timeout_s: float) -> UffdMsg:
        """The next page-fault message; TimeoutError if none comes in time."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            raise TimeoutError(f"no fault on the userfaultfd page within {timeout_s} s")
        msg = UffdMsg()
        n = os.readv(self.fd, [memoryview(msg).cast("B")])
        if n != ctypes.sizeof(msg) or msg.event != UFFD_EVENT_PAGEFAULT:
            raise OSError(f"unexpected userfaultfd message: {n} bytes, event {msg.event:#x}")
        return msg

    def pending(self) -> bool:
        """Whether a fault message is waiting (the fd is readable)."""
        return bool(select.select([self.fd], [], [], 0)[0])

    def resolve(self, contents: bytes) -> None:
        """Fill the page with ``contents`` (zero-padded) and wake the faulting
        thread: its access then completes on the new page."""
        src = ctypes.create_string_buffer(contents.ljust(self.size, b"\0"), self.size)
        copy = UffdioCopy(dst=self.address, src=ctypes.addressof(src), len=self.size)
        self._check(UFFDIO_COPY, copy, "UFFDIO_COPY")
        if copy.copy != self.size:
            raise OSError(f"UFFDIO_COPY copied {copy.copy} of {self.size} bytes")

    def close(self) -> None:
        if self.address:
            _libc.munmap(self.address, self.size)
            self.address = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> MissingPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
