"""Python binding for the doorbell test module (/dev/doorbell).

Mirrors doorbell-module/doorbell.h so that tests can drive the module without
a C helper.  tests/host/test_doorbell_abi.py compiles that header and fails if
the numbers here drift from it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from types import TracebackType

from payload.kvm.ioctl import IO, IOR, IOW

DEFAULT_PATH = "/dev/doorbell"

class DoorbellEventfd(ctypes.Structure):
    """struct doorbell_eventfd, the DOORBELL_ATTACH_EVENTFD argument."""

    _fields_ = [("fd", ctypes.c_int32), ("flags", ctypes.c_uint32)]


_U64 = struct.Struct("=Q")

DOORBELL_IOCTL_TYPE = 0xB9
DOORBELL_RING = IO(DOORBELL_IOCTL_TYPE, 0x00)
DOORBELL_ATTACH_EVENTFD = IOW(DOORBELL_IOCTL_TYPE, 0x01, ctypes.sizeof(DoorbellEventfd))
DOORBELL_DETACH_EVENTFD = IO(DOORBELL_IOCTL_TYPE, 0x02)
DOORBELL_GET_COUNT = IOR(DOORBELL_IOCTL_TYPE, 0x03, _U64.size)
DOORBELL_RESET = IOR(DOORBELL_IOCTL_TYPE, 0x04, _U64.size)

# What the ABI test compares against the C header, by the C spelling.
ABI: dict[str, int] = {
    "DOORBELL_IOCTL_TYPE": DOORBELL_IOCTL_TYPE,
    "DOORBELL_RING": DOORBELL_RING,
    "DOORBELL_ATTACH_EVENTFD": DOORBELL_ATTACH_EVENTFD,
    "DOORBELL_DETACH_EVENTFD": DOORBELL_DETACH_EVENTFD,
    "DOORBELL_GET_COUNT": DOORBELL_GET_COUNT,
    "DOORBELL_RESET": DOORBELL_RESET,
    "sizeof(struct doorbell_eventfd)": ctypes.sizeof(DoorbellEventfd),
    "offsetof(struct doorbell_eventfd, fd)": DoorbellEventfd.fd.offset,
    "offsetof(struct doorbell_eventfd, flags)": DoorbellEventfd.flags.offset,
}


class Doorbell:
    """One open file of /dev/doorbell, i.e. one independent counter.

    Failing ioctls raise OSError carrying the kernel's errno, so tests can
    assert on EBUSY, ENOENT and so on directly.
    """

    def __init__(self, fd: int) -> None:
        """Wrap an already open doorbell fd; the object closes it."""
        self._fd: int | None = fd

    @classmethod
    def open(cls, path: str = DEFAULT_PATH) -> Doorbell:
        """Open a new doorbell; each open gets its own counter."""
        return cls(os.open(path, os.O_RDWR | os.O_CLOEXEC))

    def fileno(self) -> int:
        """The doorbell fd, for raw ioctls; ValueError once closed."""
        if self._fd is None:
            raise ValueError("doorbell is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def ring(self) -> None:
        """Add one, the way a VMM exit handler would."""
        fcntl.ioctl(self.fileno(), DOORBELL_RING)

    def attach(self, efd: int, flags: int = 0) -> None:
        """Count every signal of eventfd `efd` in the kernel from now on.

        `flags` is only there so tests can check that non-zero is refused.
        """
        arg = DoorbellEventfd(fd=efd, flags=flags)
        fcntl.ioctl(self.fileno(), DOORBELL_ATTACH_EVENTFD, bytes(arg))

    def detach(self) -> None:
        """Stop counting the attached eventfd (ENOENT if none)."""
        fcntl.ioctl(self.fileno(), DOORBELL_DETACH_EVENTFD)

    @property
    def count(self) -> int:
        """The counter (DOORBELL_GET_COUNT)."""
        buf = fcntl.ioctl(self.fileno(), DOORBELL_GET_COUNT, bytes(_U64.size))
        return _U64.unpack(buf)[0]

    def reset(self) -> int:
        """Zero the counter and return its old value, in one step."""
        buf = fcntl.ioctl(self.fileno(), DOORBELL_RESET, bytes(_U64.size))
        return _U64.unpack(buf)[0]

    def close(self) -> None:
        """Close the doorbell, which also detaches its eventfd."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> Doorbell:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
