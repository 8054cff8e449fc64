"""Guest programs that make hypercalls, for the hypercall rows of the benchmark.

The 2009 posting measured an "iofd-hc" doorbell; upstream's in-kernel path
from a hypercall to an eventfd is KVM_HYPERV_EVENTFD: the Hyper-V
SIGNAL_EVENT hypercall for a connection id bound to an eventfd.  KVM takes
Hyper-V hypercalls only in protected mode at CPL 0 (real mode gets #UD), so
these programs first enter 16-bit protected mode: they write a small GDT,
load it, set CR0.PE and reload every segment from it.  The code segment stays
16-bit with base 0, so the rest of the program is encoded as in real mode.

Calling convention (TLFS, 32-bit callers): EDX:EAX is the hypercall input
value (call code, bit 16 = fast), EBX:ECX the input parameter, and the
status comes back in EDX:EAX.  KVM's own hypercalls take the number in EAX
and return in EAX; an unknown number returns -KVM_ENOSYS without leaving the
kernel, which makes it the hypercall counterpart of the kernel-pio floor.

Each loop stores the last status at STATUS_ADDR and counts its iterations in
EDI, reported as the program's result on DONE_PORT.
"""

from __future__ import annotations

from payload.guest.asm import Asm
from payload.guest.memmap import GDT_ADDR, GDT_DESC_ADDR, LOAD_ADDR, STATUS_ADDR
from payload.guest.programs import Program, check_count, finish

HVCALL_SIGNAL_EVENT = 0x005D
HV_HYPERCALL_FAST_BIT = 1 << 16
HV_STATUS_SUCCESS = 0
HV_STATUS_INVALID_HYPERCALL_INPUT = 3
KVM_ENOSYS = 1000
UNKNOWN_HYPERCALL = 0xDEAD
"""A KVM hypercall number nothing implements."""

CODE_SELECTOR = 0x08
DATA_SELECTOR = 0x10
# Descriptors as (low dword, high dword): base 0, limit 0xffff, byte
# granularity, 16-bit (D/B = 0), present, DPL 0; access 0x9A = code
# execute/read, 0x92 = data read/write.
GDT = ((0, 0), (0x0000FFFF, 0x00009A00), (0x0000FFFF, 0x00009200))
VENDORS = {"amd": "vmmcall", "intel": "vmcall"}


def protected_mode_entry(a: Asm) -> None:
    """Write and load the GDT, set CR0.PE, and reload CS and the data segments."""
    for i, (low, high) in enumerate(GDT):
        for j, dword in enumerate((low, high)):
            a.mov_imm("eax", dword)
            a.store(GDT_ADDR + 8 * i + 4 * j, "eax")
    a.mov_imm("eax", (GDT_ADDR << 16) | (8 * len(GDT) - 1))   # limit, base[15:0]
    a.store(GDT_DESC_ADDR, "eax")
    a.mov_imm("eax", GDT_ADDR >> 16)                           # base[31:16]
    a.store(GDT_DESC_ADDR + 4, "eax")
    a.lgdt(GDT_DESC_ADDR)
    a.mov_from_cr0("eax")
    a.mov_imm("ebx", 1)                                        # CR0.PE
    a.or_reg("eax", "ebx")
    a.mov_to_cr0("eax")
    a.jmp_far_next(CODE_SELECTOR)
    a.mov_imm("ax", DATA_SELECTOR)
    for seg in ("ds", "es", "ss", "fs", "gs"):
        a.mov_to_sreg(seg, "ax")


def _hypercall(a: Asm, vendor: str) -> None:
    if vendor not in VENDORS:
        raise ValueError(f"vendor must be one of {sorted(VENDORS)}, not {vendor!r}")
    getattr(a, VENDORS[vendor])()


def _loop(name: str, n: int, vendor: str, regs: dict[str, int]) -> Program:
    check_count(n)
    a = Asm(LOAD_ADDR)
    protected_mode_entry(a)
    a.mov_imm("edi", 0)
    if n:
        a.mov_imm("esi", n)
        a.label("top")
        for r, value in regs.items():       # the call clobbers its status registers
            a.mov_imm(r, value)
        _hypercall(a, vendor)
        a.store(STATUS_ADDR, "eax")
        a.inc("edi")
        a.dec("esi")
        a.jnz("top")
    return finish(a, name, n, result="edi")


def hv_signal_event_loop(n: int, conn_id: int, vendor: str) -> Program:
    """N fast Hyper-V SIGNAL_EVENT hypercalls for ``conn_id`` (the ``hc`` mode)."""
    if not 0 <= conn_id < (1 << 24):
        raise ValueError("a Hyper-V connection id has 24 bits")
    return _loop("hv_signal_event_loop", n, vendor, {
        "eax": HVCALL_SIGNAL_EVENT | HV_HYPERCALL_FAST_BIT, "edx": 0, "ecx": conn_id, "ebx": 0})


def unknown_hypercall_loop(n: int, vendor: str) -> Program:
    """N KVM hypercalls with a number KVM does not know (the ``hc-floor`` mode):
    each returns -KVM_ENOSYS in EAX without leaving the kernel."""
    return _loop("unknown_hypercall_loop", n, vendor, {"eax": UNKNOWN_HYPERCALL})
