"""L2 guest programs for the KVM_IOFD register-bank (buffer) tests.

A buffered iofd is a bank of registers, so its tests need what the doorbell
loops in :mod:`payload.guest.programs` do not give: writes of distinct
values to chosen offsets, reads whose values come back to the test one by
one, 8-byte MMIO accesses, and a loop that writes 1, 2, 3, ... to one
register.  They end like every other program (``out DONE_PORT, eax``, then
``hlt``), so "every access stayed in the kernel" is still one KVM_RUN return.

The 8-byte accesses use the emitter's MMX ``movq`` load and store (see
:meth:`payload.guest.asm.Asm.movq_store`), which need CR0.EM and CR0.TS
clear, as ``Vcpu.enable_sse`` leaves them.

Where a program keeps its data, below :data:`LOAD_ADDR`:

* :data:`STAGE_ADDR`: 8 bytes an 8-byte value passes through on its way
  into or out of MM0 (real mode cannot load MM0 from an immediate).
* :data:`SLOTS_ADDR`: one 8-byte slot per read, in program order; a read
  of ``n`` bytes stores its ``n`` bytes at the start of its slot, so the
  test reads them back with ``vm.read(slot_address(k), n)``.  Before each
  read the register is loaded with :data:`POISON`, so a read that did not
  complete shows up as poison rather than as a stale value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from payload.guest.asm import ACCUMULATOR, Asm
from payload.guest.memmap import LOAD_ADDR, MMIO_BASE, MMIO_LIMIT
from payload.guest.programs import Program, finish

STAGE_ADDR = 0x0C20
"""8 bytes of RAM that 8-byte values are staged in (clear of XMM_DATA_ADDR's 16)."""
SLOTS_ADDR = 0x0D00
"""Where the read slots start; they run up to LOAD_ADDR."""
SLOT_SIZE = 8
MAX_READS = (LOAD_ADDR - SLOTS_ADDR) // SLOT_SIZE
POISON = 0xFFFF_FFFF_FFFF_FFFF
"""What a read's destination holds before the read (truncated to its width)."""

@dataclass(frozen=True)
class Write:
    """The guest writes ``value`` (``width`` bytes) to port or address ``addr``."""

    bus: str  # "pio" or "mmio"
    addr: int
    width: int
    value: int


@dataclass(frozen=True)
class Read:
    """The guest reads ``width`` bytes at ``addr`` into the next read slot."""

    bus: str
    addr: int
    width: int


Op = Write | Read


def slot_address(k: int) -> int:
    """Guest address of the k-th read's slot."""
    if not 0 <= k < MAX_READS:
        raise ValueError(f"read slot {k} outside 0..{MAX_READS - 1}")
    return SLOTS_ADDR + k * SLOT_SIZE


def _check(op: Op) -> None:
    if op.bus == "pio":
        if op.width not in (1, 2, 4):
            raise ValueError(f"port I/O is 1, 2 or 4 bytes wide, not {op.width}")
        if not (op.addr >= 0 and op.addr + op.width <= 0x10000):
            raise ValueError(f"port {op.addr:#x}+{op.width} is outside the 64 KiB I/O space")
    elif op.bus == "mmio":
        if op.width not in (1, 2, 4, 8):
            raise ValueError(f"an MMIO register is 1, 2, 4 or 8 bytes wide, not {op.width}")
        if not (op.addr >= MMIO_BASE and op.addr + op.width <= MMIO_LIMIT):
            raise ValueError(f"MMIO {op.addr:#x}+{op.width} must lie in [{MMIO_BASE:#x}, {MMIO_LIMIT:#x})")
    else:
        raise ValueError(f"bus must be 'pio' or 'mmio', not {op.bus!r}")
    if isinstance(op, Write) and not 0 <= op.value < (1 << (8 * op.width)):
        raise ValueError(f"value {op.value:#x} does not fit in {op.width} bytes")


def _stage(a: Asm, value: int) -> None:
    """Put an 8-byte ``value`` in MM0, through STAGE_ADDR."""
    for half in (0, 4):
        a.mov_imm("eax", (value >> (8 * half)) & 0xFFFF_FFFF)
        a.store(STAGE_ADDR + half, "eax")
    a.movq_load("mm0", STAGE_ADDR)


def _write(a: Asm, op: Write) -> None:
    if op.width == 8:
        _stage(a, op.value)
        a.movq_store(op.addr, "mm0")
        return
    a.mov_imm("eax", op.value)
    if op.bus == "pio":
        a.mov_imm("dx", op.addr)
        a.out_dx(op.width)
    else:
        a.store(op.addr, ACCUMULATOR[op.width])


def _read(a: Asm, op: Read, slot: int) -> None:
    if op.width == 8:
        _stage(a, POISON)
        a.movq_load("mm0", op.addr)
        a.movq_store(slot, "mm0")
        return
    acc = ACCUMULATOR[op.width]
    a.mov_imm("eax", POISON & 0xFFFF_FFFF)
    if op.bus == "pio":
        a.mov_imm("dx", op.addr)
        a.in_dx(op.width)
    else:
        a.load(acc, op.addr)
    a.store(slot, acc)


def register_script(ops: Sequence[Op]) -> Program:
    """Each write and read once, in order, straight-line (no loop), so a
    test can give every access its own address, width and value.  The
    k-th :class:`Read` lands in slot k.  A program with an 8-byte access
    needs a vCPU with ``enable_sse()`` (MMX, see the module doc)."""
    reads = sum(isinstance(op, Read) for op in ops)
    if reads > MAX_READS:
        raise ValueError(f"{reads} reads, but there are only {MAX_READS} read slots")
    a = Asm(LOAD_ADDR)
    slot = 0
    for op in ops:
        _check(op)
        if isinstance(op, Write):
            _write(a, op)
        else:
            _read(a, op, slot_address(slot))
            slot += 1
    program = finish(a, "register_script", len(ops), None)
    if program.origin + len(program.code) > MMIO_BASE:
        raise ValueError(f"{len(ops)} accesses make {len(program.code)} bytes of code: more than RAM holds")
    return program


def needs_mmx(ops: Sequence[Op]) -> bool:
    """Whether :func:`register_script` uses MM0 for these accesses."""
    return any(op.width == 8 for op in ops)


def counting_loop(n: int, bus: str, addr: int) -> Program:
    """Write 1, 2, 3, ..., ``n`` to the 4-byte register at port or address
    ``addr``, one write per value; DONE reports the last value written
    (``n``).  EAX holds the value, ESI counts down the iterations."""
    if not 1 <= n < (1 << 32):
        raise ValueError(f"n = {n} must be in 1 .. 2**32 - 1")
    _check(Write(bus, addr, 4, 0))
    a = Asm(LOAD_ADDR)
    a.mov_imm("eax", 0)
    if bus == "pio":
        a.mov_imm("dx", addr)
    a.mov_imm("esi", n)
    a.label("top")
    a.inc("eax")
    if bus == "pio":
        a.out_dx(4)
    else:
        a.store(addr, "eax")
    a.dec("esi")
    a.jnz("top")
    return finish(a, f"counting_{bus}", n, "eax")
