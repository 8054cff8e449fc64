"""The guest program of a probe: each access once, in order.

Like :func:`payload.guest.programs.access_sequence` (1, 2 and 4 bytes on
either bus, reads ORed into EBX, then EBX to RESULT_ADDR and DONE_PORT,
then HLT), plus the 16-byte MMIO store (``movdqu``) that api.rst's
"Accesses" singles out: KVM hands it to the bus as two 8-byte pieces.
XMM0 is loaded once from XMM_DATA_ADDR, which :func:`stage` fills with
WIDE_DATA; the vCPU needs SSE enabled (``Vcpu.enable_sse``).
"""

from __future__ import annotations

from payload.fuzz import model as m
from payload.guest import programs
from payload.guest.asm import ACCUMULATOR, Asm
from payload.guest.memmap import DONE_PORT, LOAD_ADDR, MMIO_BASE, MMIO_LIMIT, RESULT_ADDR, XMM_DATA_ADDR

POISON = 0xFFFFFFFF
"""EAX before a read, so bytes a read did not set would show."""


def _check(acc: m.Access) -> None:
    limit = 0x10000 if acc.pio else MMIO_LIMIT
    base = 0 if acc.pio else MMIO_BASE
    if not (base <= acc.addr and acc.addr + acc.size <= limit):
        raise ValueError(f"{acc} is outside [{base:#x}, {limit:#x})")
    if acc.size == m.WIDE_SIZE and (acc.pio or not acc.write):
        raise ValueError(f"{acc}: only MMIO stores are 16 bytes wide")
    if acc.size != m.WIDE_SIZE and acc.size not in ACCUMULATOR:
        raise ValueError(f"{acc}: 1, 2, 4 or 16 bytes")


def probe_program(accesses: tuple[m.Access, ...] | list[m.Access]) -> programs.Program:
    """The program a probe runs for ``accesses``."""
    a = Asm(LOAD_ADDR)
    a.mov_imm("ebx", 0)
    if any(acc.size == m.WIDE_SIZE for acc in accesses):
        a.movdqu_load("xmm0", XMM_DATA_ADDR)
    for acc in accesses:
        _check(acc)
        if acc.size == m.WIDE_SIZE:
            a.movdqu_store(acc.addr, "xmm0")
            continue
        reg = ACCUMULATOR[acc.size]
        a.mov_imm("eax", m.PATTERN if acc.write else POISON)
        if acc.pio:
            a.mov_imm("dx", acc.addr)
            if acc.write:
                a.out_dx(acc.size)
            else:
                a.in_dx(acc.size)
        elif acc.write:
            a.store(acc.addr, reg)
        else:
            a.load(reg, acc.addr)
        if not acc.write:
            a.or_reg({1: "bl", 2: "bx", 4: "ebx"}[acc.size], reg)
    a.mov_reg("eax", "ebx")
    a.store(RESULT_ADDR, "eax")
    a.mov_imm("dx", DONE_PORT)
    a.out_dx(4)
    a.label("halt")
    a.hlt()
    a.jmp("halt")
    return programs.Program("fuzz_probe", a.assemble(), a.origin, len(accesses), tuple(a.listing()), a.labels)


def stage() -> tuple[int, bytes]:
    """(guest address, bytes) to write before the program runs: XMM0's data."""
    return XMM_DATA_ADDR, m.WIDE_DATA
