"""User memory behind a KVM_IOFD register bank (KVM_IOFD_FLAG_BUFFER).

The pages are mapped with mmap(2) through libc (:mod:`payload.kvm.libc`)
rather than Python's ``mmap`` module, because the fault tests must unmap or
write-protect them while an iofd still points at them.
Loads and stores go through ``ctypes`` at the register's own width, like a
device model in C would, so a 4-byte register is read with one 4-byte load.
"""

from __future__ import annotations

import ctypes
import mmap

from payload.kvm.libc import last_error, mapped
from payload.kvm.libc import libc as _libc

_WIDTHS = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}


class RegisterBuffer:
    """``size`` bytes of anonymous, zeroed user memory at :attr:`address`."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("a register buffer needs at least one byte")
        self.size = size
        self._span = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        addr = _libc.mmap(None, self._span, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if not mapped(addr):
            raise last_error("mmap")
        self.address: int = addr
        self.mapped = True

    def _at(self, offset: int, width: int) -> ctypes._SimpleCData:
        if width not in _WIDTHS:
            raise ValueError(f"registers are 1, 2, 4 or 8 bytes wide, not {width}")
        if not self.mapped:
            raise ValueError("the buffer was unmapped")
        if offset < 0 or offset + width > self.size:
            raise ValueError(f"offset {offset:#x}+{width} is outside the {self.size}-byte buffer")
        return _WIDTHS[width].from_address(self.address + offset)

    def load(self, offset: int, width: int = 4) -> int:
        """One load of ``width`` bytes, as a device model reads a register."""
        return int(self._at(offset, width).value)

    def store(self, offset: int, value: int, width: int = 4) -> None:
        """Set a register, e.g. to its reset value, with one store."""
        self._at(offset, width).value = value

    def bytes(self, offset: int = 0, length: int | None = None) -> bytes:
        if not self.mapped:
            raise ValueError("the buffer was unmapped")
        length = self.size - offset if length is None else length
        return ctypes.string_at(self.address + offset, length)

    def protect(self, writable: bool) -> None:
        """Make the pages read-only (or writable again) under a live iofd."""
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        if _libc.mprotect(self.address, self._span, prot) != 0:
            raise last_error("mprotect")

    def unmap(self) -> None:
        """Take the pages away, so KVM's next access to them faults."""
        if self.mapped:
            if _libc.munmap(self.address, self._span) != 0:
                raise last_error("munmap")
            self.mapped = False

    def close(self) -> None:
        self.unmap()

    def __enter__(self) -> RegisterBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
