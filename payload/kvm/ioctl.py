"""Linux ioctl request-number encoding (asm-generic/ioctl.h).

Python has no ``_IOW()`` macro, so the request numbers have to be rebuilt
from the same bit layout the kernel headers use.  x86, arm64 and riscv all
use the asm-generic layout: ``dir:2 | size:14 | type:8 | nr:8``.
"""

from __future__ import annotations

import ctypes

IOC_NRBITS = 8
IOC_TYPEBITS = 8
IOC_SIZEBITS = 14
IOC_DIRBITS = 2

IOC_NRSHIFT = 0
IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS
IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS
IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS

IOC_NONE = 0
IOC_WRITE = 1
IOC_READ = 2

SizeLike = int | type
"""A byte count or a ctypes type whose ``sizeof`` is the argument size."""


def _size(arg: SizeLike) -> int:
    """Return the argument size in bytes, as ``sizeof(type)`` would in C."""
    if isinstance(arg, int):
        return arg
    return ctypes.sizeof(arg)


def _IOC(direction: int, type_: int, nr: int, size: SizeLike) -> int:
    """Pack an ioctl number exactly like the kernel's ``_IOC`` macro.

    Out-of-range fields raise instead of silently spilling into the
    neighbouring field, which would produce a valid-looking wrong number.
    """
    nbytes = _size(size)
    for name, value, bits in (
        ("dir", direction, IOC_DIRBITS),
        ("type", type_, IOC_TYPEBITS),
        ("nr", nr, IOC_NRBITS),
        ("size", nbytes, IOC_SIZEBITS),
    ):
        if not 0 <= value < (1 << bits):
            raise ValueError(f"ioctl {name} field {value:#x} does not fit in {bits} bits")
    return (
        (direction << IOC_DIRSHIFT)
        | (type_ << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | (nbytes << IOC_SIZESHIFT)
    )


def IO(type_: int, nr: int) -> int:
    """``_IO``: an ioctl with no argument struct."""
    return _IOC(IOC_NONE, type_, nr, 0)


def IOR(type_: int, nr: int, size: SizeLike) -> int:
    """``_IOR``: the kernel writes ``size`` bytes back to userspace."""
    return _IOC(IOC_READ, type_, nr, size)


def IOW(type_: int, nr: int, size: SizeLike) -> int:
    """``_IOW``: userspace passes ``size`` bytes in."""
    return _IOC(IOC_WRITE, type_, nr, size)


def IOWR(type_: int, nr: int, size: SizeLike) -> int:
    """``_IOWR``: ``size`` bytes go in and come back out."""
    return _IOC(IOC_READ | IOC_WRITE, type_, nr, size)


def IOC_SIZE(request: int) -> int:
    """``_IOC_SIZE``: the argument size a request number was encoded with,
    which the checked ioctl compares with the struct it is given."""
    return (request >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)
