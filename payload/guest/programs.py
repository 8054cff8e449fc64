"""The L2 guest programs: short real-mode loops that make exits on purpose.

The memory and port map is :mod:`payload.guest.memmap`; its names are
re-exported here for the programs' callers.

End-of-program convention: every program finishes with
``out DONE_PORT, eax`` (EAX = the program's result, also stored at
RESULT_ADDR) and then ``hlt``.  Nothing in KVM claims DONE_PORT, so it always
exits to userspace, and the VMM treats that exit as completion.  HLT alone is
not enough: with KVM_CREATE_IRQCHIP the in-kernel LAPIC handles HLT itself
and KVM_RUN would not return.  So an N-iteration loop whose accesses all exit
makes N + 1 KVM_RUN returns; one whose accesses are all handled in the
kernel makes exactly 1.

Loop counters live in ESI (CPUID clobbers EAX/EBX/ECX/EDX), so N can be up
to 2**32 - 1; N = 0 emits no loop at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from payload.guest.asm import ACCUMULATOR, Asm, format_listing
from payload.guest.memmap import (  # noqa: F401  (re-exported)
    DONE_PORT,
    ELCR_PORT,
    IDT_DESC_ADDR,
    LOAD_ADDR,
    MMIO_ADDR,
    MMIO_BASE,
    MMIO_LIMIT,
    PIO_PORT,
    RAM_SIZE,
    RESULT_ADDR,
    XMM_DATA_ADDR,
)

PATTERN = 0x12345678
"""Default value written by write loops (truncated to the access size)."""
POISON = 0xFFFFFFFF
"""Loaded into EAX before every read so a read that does not complete
(leaves the register alone) shows up as non-zero in the result."""
WIDE_PATTERN = bytes.fromhex("00112233445566778899aabbccddeeff")
"""What :func:`wide_store` writes: every byte differs, so each 8-byte half
that reaches userspace is recognisable."""


@dataclass(frozen=True)
class Program:
    """Machine code plus what a test needs to know about it."""

    name: str
    code: bytes
    origin: int
    count: int
    listing: tuple[tuple[int, bytes, str], ...]
    labels: dict[str, int] = field(default_factory=dict, compare=False)
    """Label name -> guest address (branch targets in the listing)."""

    def listing_text(self) -> str:
        """Human-readable disassembly of the emitted instructions."""
        return format_listing(self.listing)


@dataclass(frozen=True)
class Access:
    """One guest access for :func:`access_sequence`."""

    bus: str  # "pio" or "mmio"
    addr: int
    size: int
    write: bool = True


def _program(name: str, a: Asm, n: int = 0) -> Program:
    return Program(name, a.assemble(), a.origin, n, tuple(a.listing()), a.labels)


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1


def _check_mmio(addr: int, size: int) -> None:
    if not (addr >= MMIO_BASE and addr + size <= MMIO_LIMIT):
        raise ValueError(
            f"MMIO access {addr:#x}+{size} must lie in [{MMIO_BASE:#x}, {MMIO_LIMIT:#x})"
        )


def _check_port(port: int, size: int) -> None:
    if not (port >= 0 and port + size <= 0x10000):
        raise ValueError(f"port {port:#x}+{size} is outside the 64 KiB I/O space")


def check_count(n: int) -> None:
    if not 0 <= n < (1 << 32):
        raise ValueError(f"loop count {n} must fit in ESI (0 .. 2**32-1)")


def _loop(a: Asm, n: int, body: Callable[[], None]) -> None:
    """``esi = n; do { body } while (--esi)``, or nothing when n == 0."""
    check_count(n)
    if n == 0:
        return
    a.mov_imm("esi", n)
    a.label("top")
    body()
    a.dec("esi")
    a.jnz("top")


def finish(a: Asm, name: str, n: int, result: str | None = None) -> Program:
    """Epilogue: store the result, report it on DONE_PORT, then halt forever."""
    if result is None:
        a.mov_imm("eax", 0)
    elif result != "eax":
        a.mov_reg("eax", result)
    a.store(RESULT_ADDR, "eax")
    a.mov_imm("dx", DONE_PORT)
    a.out_dx(4)
    a.label("halt")
    a.hlt()
    a.jmp("halt")  # an interrupt would wake HLT; never fall off the end
    return _program(name, a, n)


def halt_only() -> Program:
    """A single HLT: the smallest guest, used to probe whether KVM works."""
    a = Asm(LOAD_ADDR)
    a.hlt()
    return _program("halt_only", a)


def pio_write_loop(n: int, size: int = 1, port: int = PIO_PORT, value: int = PATTERN) -> Program:
    """``n`` writes of ``size`` bytes to ``port``."""
    _check_port(port, size)
    a = Asm(LOAD_ADDR)
    a.mov_imm("eax", value & _mask(4))
    a.mov_imm("dx", port)
    _loop(a, n, lambda: a.out_dx(size))
    return finish(a, f"pio_write{size}", n)


def string_pio(direction: str, count: int, addr: int, size: int = 1, port: int = PIO_PORT) -> Program:
    """One ``rep ins`` (``direction`` "in") of ``count`` elements from
    ``port`` to guest RAM at ``addr``, or one ``rep outs`` ("out") from
    there to the port.  The elements are ``size`` bytes each."""
    _check_port(port, size)
    if direction not in ("in", "out"):
        raise ValueError(f"a string PIO is 'in' or 'out', not {direction!r}")
    if not (count > 0 and addr >= 0 and addr + count * size <= LOAD_ADDR):
        raise ValueError(f"{count} elements of {size} bytes at {addr:#x} do not fit below the program")
    a = Asm(LOAD_ADDR)
    a.cld()
    a.mov_imm("dx", port)
    a.mov_imm("cx", count)
    if direction == "in":
        a.mov_imm("di", addr)
        a.rep_ins(size)
    else:
        a.mov_imm("si", addr)
        a.rep_outs(size)
    return finish(a, f"string_{direction}{size}", count)


def pio_read_loop(n: int, size: int = 1, port: int = PIO_PORT) -> Program:
    """``n`` reads of ``size`` bytes from ``port``; result = OR of all values."""
    _check_port(port, size)
    acc = ACCUMULATOR[size]
    dst = {1: "bl", 2: "bx", 4: "ebx"}[size]
    a = Asm(LOAD_ADDR)
    a.mov_imm("ebx", 0)
    a.mov_imm("dx", port)

    def body() -> None:
        a.mov_imm("eax", POISON)
        a.in_dx(size)
        a.or_reg(dst, acc)

    _loop(a, n, body)
    return finish(a, f"pio_read{size}", n, result="ebx")


def mmio_write_loop(n: int, size: int = 1, addr: int = MMIO_ADDR, value: int = PATTERN) -> Program:
    """``n`` writes of ``size`` bytes to unbacked guest address ``addr``."""
    _check_mmio(addr, size)
    a = Asm(LOAD_ADDR)
    a.mov_imm("eax", value & _mask(4))
    _loop(a, n, lambda: a.store(addr, ACCUMULATOR[size]))
    return finish(a, f"mmio_write{size}", n)


def mmio_read_loop(n: int, size: int = 1, addr: int = MMIO_ADDR) -> Program:
    """``n`` reads of ``size`` bytes from ``addr``; result = OR of all values.

    EAX is poisoned before each read, so the result is zero only if every
    read really completed with zero.
    """
    _check_mmio(addr, size)
    acc = ACCUMULATOR[size]
    dst = {1: "bl", 2: "bx", 4: "ebx"}[size]
    a = Asm(LOAD_ADDR)
    a.mov_imm("ebx", 0)

    def body() -> None:
        a.mov_imm("eax", POISON)
        a.load(acc, addr)
        a.or_reg(dst, acc)

    _loop(a, n, body)
    return finish(a, f"mmio_read{size}", n, result="ebx")


def cpuid_loop(n: int) -> Program:
    """``n`` CPUID(leaf 0): an exit KVM always handles in the kernel."""
    a = Asm(LOAD_ADDR)

    def body() -> None:
        a.mov_imm("eax", 0)
        a.cpuid()

    _loop(a, n, body)
    return finish(a, "cpuid", n)


def elcr_write_loop(n: int) -> Program:
    """``n`` byte writes of 0 to the PIC ELCR; needs KVM_CREATE_IRQCHIP to
    stay in the kernel (without it each write exits to userspace)."""
    return dataclasses.replace(
        pio_write_loop(n, size=1, port=ELCR_PORT, value=0), name="elcr_write"
    )


def access_sequence(accesses: list[Access] | tuple[Access, ...]) -> Program:
    """Each access once, in order: for range-edge tests that need exact
    per-access outcomes.  Reads OR into the result like the read loops."""
    a = Asm(LOAD_ADDR)
    a.mov_imm("ebx", 0)
    for acc in accesses:
        reg = ACCUMULATOR[acc.size]
        if acc.bus == "pio":
            _check_port(acc.addr, acc.size)
            a.mov_imm("dx", acc.addr)
            if acc.write:
                a.mov_imm("eax", PATTERN)
                a.out_dx(acc.size)
            else:
                a.mov_imm("eax", POISON)
                a.in_dx(acc.size)
        elif acc.bus == "mmio":
            _check_mmio(acc.addr, acc.size)
            if acc.write:
                a.mov_imm("eax", PATTERN)
                a.store(acc.addr, reg)
            else:
                a.mov_imm("eax", POISON)
                a.load(reg, acc.addr)
        else:
            raise ValueError(f"bus must be 'pio' or 'mmio', not {acc.bus!r}")
        if not acc.write:
            a.or_reg({1: "bl", 2: "bx", 4: "ebx"}[acc.size], reg)
    return finish(a, "access_sequence", len(accesses), result="ebx")


def wide_store(addr: int, data: bytes = WIDE_PATTERN) -> Program:
    """One 16-byte SSE store (``movdqu [addr], xmm0``) of ``data``.

    KVM hands an MMIO write to the io bus at most 8 bytes at a time, so this
    is the one guest access that becomes two bus accesses without crossing
    a page.  The vCPU must have SSE enabled (``Vcpu.enable_sse``).  XMM0 is
    loaded from RAM at XMM_DATA_ADDR, staged there 4 bytes at a time.
    """
    if len(data) != 16:
        raise ValueError(f"a movdqu store writes 16 bytes, not {len(data)}")
    _check_mmio(addr, 16)
    a = Asm(LOAD_ADDR)
    for off in range(0, 16, 4):
        a.mov_imm("eax", int.from_bytes(data[off : off + 4], "little"))
        a.store(XMM_DATA_ADDR + off, "eax")
    a.movdqu_load("xmm0", XMM_DATA_ADDR)
    a.movdqu_store(addr, "xmm0")
    return finish(a, "wide_store", 1)


def es_write(offset: int, size: int = 1, value: int = PATTERN) -> Program:
    """One ``size``-byte write of ``value`` to ES:``offset``.

    For devices above the 64 KiB that DS = 0 reaches, such as the IOAPIC at
    0xfec00000: the caller points ES's base there (``Vcpu.set_segment_base``)
    and every other access of the program still goes through DS.
    """
    if size not in ACCUMULATOR or not (offset >= 0 and offset + size <= 0x10000):
        raise ValueError(f"ES write {offset:#x}+{size} must be 1, 2 or 4 bytes inside the 64 KiB segment")
    a = Asm(LOAD_ADDR)
    a.mov_imm("eax", value & _mask(4))
    a.store(offset, ACCUMULATOR[size], seg="es")
    return finish(a, f"es_write{size}", 1)


def spin_forever() -> Program:
    """``jmp $``: never exits on its own, to test the VMM's time limit."""
    a = Asm(LOAD_ADDR)
    a.label("spin")
    a.jmp("spin")
    return _program("spin_forever", a)


def triple_fault() -> Program:
    """Load an IDT with limit 0, then ``ud2``: #UD's vector is past the limit
    (#GP), so is #GP's (#DF), so is #DF's: a triple fault, KVM_EXIT_SHUTDOWN.

    ``ud2`` rather than ``int3``: KVM's real-mode emulation delivers software
    interrupts (INT n) without the IDT limit check, so ``int3`` would jump
    through the zeroed IVT instead of faulting on some hosts.
    """
    a = Asm(LOAD_ADDR)
    a.mov_imm("ax", 0)
    for offset in (0, 2, 4):  # limit:16 = 0, base:32 = 0
        a.store(IDT_DESC_ADDR + offset, "ax")
    a.lidt(IDT_DESC_ADDR)
    a.ud2()
    a.label("halt")
    a.hlt()
    a.jmp("halt")
    return _program("triple_fault", a)


# --- the benchmark's loops: they count their own iterations -------------------------
ITERATION_COUNTER = "edi"
"""Register the benchmark loops count in, apart from the loop's own ESI: it
starts at 0 and each iteration increments it, so DONE reports the
iterations themselves, as the hypercall loops' does.  A guest that skipped
or repeated a loop body would report a different number than the N it was
built for, which ESI, the loop's own exit condition, cannot show."""


def _counted_loop(a: Asm, n: int, body: Callable[[], None]) -> None:
    """``body`` ``n`` times, each followed by ``inc edi``."""
    def counted() -> None:
        body()
        a.inc(ITERATION_COUNTER)

    _loop(a, n, counted)


def bench_write_loop(n: int, bus: str, addr: int, value: int = PATTERN,
                     last: int | None = None, size: int = 1) -> Program:
    """``n`` writes of ``size`` bytes to port or MMIO address ``addr``;
    DONE reports n (see :data:`ITERATION_COUNTER`).

    With ``last``, the n-th write writes ``last`` instead of ``value``
    (after a loop of n - 1), so the final value of a register that keeps
    what is written identifies the last write and no other.
    """
    if bus == "pio":
        _check_port(addr, size)
    elif bus == "mmio":
        _check_mmio(addr, size)
    else:
        raise ValueError(f"bus must be 'pio' or 'mmio', not {bus!r}")
    check_count(n)
    a = Asm(LOAD_ADDR)
    a.mov_imm(ITERATION_COUNTER, 0)
    a.mov_imm("eax", value & _mask(4))
    if bus == "pio":
        a.mov_imm("dx", addr)

    def write() -> None:
        if bus == "pio":
            a.out_dx(size)
        else:
            a.store(addr, ACCUMULATOR[size])

    if last is None or n == 0:
        _counted_loop(a, n, write)
    else:
        _counted_loop(a, n - 1, write)
        a.mov_imm("eax", last & _mask(4))
        write()
        a.inc(ITERATION_COUNTER)
    return finish(a, f"bench_{bus}_write{size}", n, result=ITERATION_COUNTER)


def bench_cpuid_loop(n: int) -> Program:
    """``n`` CPUID(leaf 0), counted like :func:`bench_write_loop`."""
    a = Asm(LOAD_ADDR)
    a.mov_imm(ITERATION_COUNTER, 0)

    def body() -> None:
        a.mov_imm("eax", 0)
        a.cpuid()

    _counted_loop(a, n, body)
    return finish(a, "bench_cpuid", n, result=ITERATION_COUNTER)
