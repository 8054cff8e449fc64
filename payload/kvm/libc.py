"""The libc calls the VMM makes directly, typed once.

``ioctl`` because Python's ``fcntl.ioctl`` cannot pass an address as an
integer; ``mmap``, ``munmap`` and ``mprotect`` because a ctypes view of a
Python ``mmap`` object pins it, and that object can neither unmap nor
write-protect pages that KVM still points at.
"""

from __future__ import annotations

import ctypes
import errno
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
libc.ioctl.restype = ctypes.c_int
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long)
libc.mmap.restype = ctypes.c_void_p
libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
libc.munmap.restype = ctypes.c_int
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
libc.mprotect.restype = ctypes.c_int

MAP_FAILED = ctypes.c_void_p(-1).value


def mapped(addr: int | None) -> bool:
    """Did ``libc.mmap`` return a mapping (not MAP_FAILED)?"""
    return addr is not None and addr != MAP_FAILED


def last_error(what: str) -> OSError:
    """An OSError for the errno the last libc call left, naming the call."""
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def errno_name(code: int) -> str:
    """``ENOENT`` for 2, ``ok`` for 0: how reports and proofs spell an
    outcome, so that a raw record reads the same on every architecture."""
    return "ok" if code == 0 else errno.errorcode.get(code, str(code))
