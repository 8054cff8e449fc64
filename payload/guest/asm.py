"""A tiny x86 emitter for the 16-bit real-mode L2 guest programs.

Why not an assembler binary: the harness must build guests on machines that
have only Python, and the programs need a dozen instructions.  Every
instruction has its own method whose docstring names the encoding (Intel SDM
notation), so no byte in a program is an unexplained hex blob, and
:meth:`Asm.listing` shows each instruction's address, bytes and mnemonic.

Real-mode conventions: the default operand and address size is 16 bits; an
``0x66`` operand-size prefix selects the 32-bit form of an instruction.
Memory operands are absolute 16-bit offsets in DS (``[moffs16]``) unless a
store names another segment, and every branch is a rel8 branch (loops here
are a few bytes long; a branch that does not fit raises).  The SSE moves
need CR4.OSFXSR set and CR0.EM clear, which the VMM's ``enable_sse`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OPSIZE = 0x66
"""Operand-size override prefix: 32-bit operands in a 16-bit code segment."""

REGS8 = ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh")
REGS16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
REGS32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
REGS_XMM = tuple(f"xmm{i}" for i in range(8))
REGS_MM = tuple(f"mm{i}" for i in range(8))

ACCUMULATOR = {1: "al", 2: "ax", 4: "eax"}
"""The register ``in``/``out`` and the moffs forms of ``mov`` use, by size."""

MODRM_DISP16 = 0b110
"""ModRM r/m value that, with mod=00 and 16-bit addressing, means [disp16]."""

SEGMENT_OVERRIDE = {"es": 0x26, "cs": 0x2E, "ss": 0x36, "ds": 0x3E, "fs": 0x64, "gs": 0x65}
"""Prefix byte that makes a memory operand use this segment instead of DS."""

MOVDQU = 0xF3
"""Mandatory prefix selecting movdqu (unaligned 16 bytes) among 0F 6F/0F 7F."""


@dataclass(frozen=True)
class Reg:
    """A general-purpose register: its 3-bit ModRM number and size in bytes."""

    name: str
    code: int
    size: int


def reg(name: str) -> Reg:
    """Look a register up by its Intel name (``al``, ``si``, ``ebx``, ...)."""
    for size, table in ((1, REGS8), (2, REGS16), (4, REGS32)):
        if name in table:
            return Reg(name, table.index(name), size)
    raise ValueError(f"unknown register {name!r}")


def _xmm(name: str) -> int:
    """ModRM number of an SSE register (``xmm0`` .. ``xmm7``)."""
    if name not in REGS_XMM:
        raise ValueError(f"unknown SSE register {name!r}")
    return REGS_XMM.index(name)


def _mm(name: str) -> int:
    """ModRM number of an MMX register (``mm0`` .. ``mm7``)."""
    if name not in REGS_MM:
        raise ValueError(f"unknown MMX register {name!r}")
    return REGS_MM.index(name)


def _segment(seg: str) -> bytes:
    """The override prefix for ``seg``; none for DS, the default."""
    if seg not in SEGMENT_OVERRIDE:
        raise ValueError(f"unknown segment register {seg!r}")
    return b"" if seg == "ds" else bytes([SEGMENT_OVERRIDE[seg]])


def _check_size(size: int) -> None:
    if size not in (1, 2, 4):
        raise ValueError(f"access size must be 1, 2 or 4 bytes in real mode, not {size}")


def _imm(value: int, size: int) -> bytes:
    """Little-endian immediate; negative values are two's complement."""
    if not -(1 << (8 * size - 1)) <= value < (1 << (8 * size)):
        raise ValueError(f"immediate {value:#x} does not fit in {size} bytes")
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _prefix(size: int) -> bytes:
    """The operand-size prefix a ``size``-byte operation needs in 16-bit code."""
    return bytes([OPSIZE]) if size == 4 else b""


@dataclass(frozen=True)
class Insn:
    """One emitted instruction: offset from the program start, bytes, text."""

    offset: int
    code: bytes
    mnemonic: str


@dataclass
class _Branch:
    """A rel8 displacement to patch once the target label is known."""

    index: int
    label: str


Listing = Iterable[tuple[int, bytes, str]]
"""``(guest address, bytes, mnemonic)`` per instruction (:meth:`Asm.listing`)."""


def format_listing(listing: Listing) -> str:
    """A listing as text, one instruction per line: for an assembler and a
    finished program alike, so both read the same in a failure message."""
    return "\n".join(f"{addr:#06x}  {code.hex(' '):<24} {text}" for addr, code, text in listing)


class Asm:
    """Emit a real-mode program instruction by instruction.

    ``origin`` is the guest address the first byte is loaded at; listings
    show guest addresses so they line up with a guest RIP in an error.
    """

    def __init__(self, origin: int = 0) -> None:
        self.origin = origin
        self._insns: list[Insn] = []
        self._labels: dict[str, int] = {}
        self._branches: list[_Branch] = []
        self._size = 0

    # -- bookkeeping ----------------------------------------------------------
    def _emit(self, code: bytes, mnemonic: str) -> None:
        self._insns.append(Insn(self._size, bytes(code), mnemonic))
        self._size += len(code)

    @property
    def here(self) -> int:
        """Guest address of the next instruction."""
        return self.origin + self._size

    def label(self, name: str) -> None:
        """Name the address of the next instruction, for branches."""
        if name in self._labels:
            raise ValueError(f"label {name!r} defined twice")
        self._labels[name] = self._size

    def _branch(self, opcode: int, mnemonic: str, target: str) -> None:
        self._branches.append(_Branch(len(self._insns), target))
        self._emit(bytes([opcode, 0]), f"{mnemonic} {target}")

    def _resolved(self) -> list[Insn]:
        insns = list(self._insns)
        for branch in self._branches:
            if branch.label not in self._labels:
                raise ValueError(f"branch to undefined label {branch.label!r}")
            insn = insns[branch.index]
            rel = self._labels[branch.label] - (insn.offset + len(insn.code))
            if not -128 <= rel <= 127:
                raise ValueError(f"branch to {branch.label!r} is {rel} bytes: not a rel8")
            insns[branch.index] = Insn(insn.offset, insn.code[:1] + _imm(rel, 1), insn.mnemonic)
        return insns

    @property
    def labels(self) -> dict[str, int]:
        """Label name -> guest address."""
        return {name: self.origin + off for name, off in self._labels.items()}

    def assemble(self) -> bytes:
        """The program's machine code, branches resolved."""
        return b"".join(insn.code for insn in self._resolved())

    def listing(self) -> list[tuple[int, bytes, str]]:
        """``(guest address, bytes, mnemonic)`` per instruction, for debugging."""
        return [(self.origin + i.offset, i.code, i.mnemonic) for i in self._resolved()]

    def listing_text(self) -> str:
        """The listing as text, one instruction per line."""
        return format_listing(self.listing())

    # -- data movement ----------------------------------------------------------
    def mov_imm(self, dst: str, value: int) -> None:
        """``mov r, imm``: B0+rb ib (8-bit), B8+rw iw (16-bit), 66 B8+rd id (32-bit)."""
        r = reg(dst)
        opcode = (0xB0 if r.size == 1 else 0xB8) + r.code
        imm = _imm(value, r.size)
        shown = int.from_bytes(imm, "little")  # as the CPU sees it: -1 is 0xffffffff
        self._emit(_prefix(r.size) + bytes([opcode]) + imm, f"mov {dst}, {shown:#x}")

    def mov_reg(self, dst: str, src: str) -> None:
        """``mov r/m, r`` register form: 88 /r (8-bit), [66] 89 /r, ModRM mod=11 reg=src rm=dst."""
        d, s = reg(dst), reg(src)
        if d.size != s.size:
            raise ValueError(f"mov {dst}, {src}: operand sizes differ")
        opcode = 0x88 if d.size == 1 else 0x89
        modrm = 0b11_000_000 | (s.code << 3) | d.code
        self._emit(_prefix(d.size) + bytes([opcode, modrm]), f"mov {dst}, {src}")

    def store(self, addr: int, src: str, seg: str = "ds") -> None:
        """``mov [addr], r``: A2/[66] A3 moffs16 for the accumulator, else
        88 /r or [66] 89 /r with ModRM mod=00 rm=110 (disp16).  Another
        ``seg`` than DS adds its override prefix (26 for ES), so one access
        can reach an address DS's 64 KiB window cannot."""
        r = reg(src)
        if r.code == 0:  # al/ax/eax have the shorter moffs encoding
            opcode = bytes([0xA2 if r.size == 1 else 0xA3])
        else:
            modrm = (r.code << 3) | MODRM_DISP16
            opcode = bytes([0x88 if r.size == 1 else 0x89, modrm])
        shown = f"[{addr:#06x}]" if seg == "ds" else f"{seg}:[{addr:#06x}]"
        self._emit(_segment(seg) + _prefix(r.size) + opcode + _imm(addr, 2), f"mov {shown}, {src}")

    def load(self, dst: str, addr: int) -> None:
        """``mov r, [addr]``: A0/[66] A1 moffs16 for the accumulator, else
        8A /r or [66] 8B /r with ModRM mod=00 rm=110 (disp16)."""
        r = reg(dst)
        if r.code == 0:
            opcode = bytes([0xA0 if r.size == 1 else 0xA1])
        else:
            modrm = (r.code << 3) | MODRM_DISP16
            opcode = bytes([0x8A if r.size == 1 else 0x8B, modrm])
        self._emit(_prefix(r.size) + opcode + _imm(addr, 2), f"mov {dst}, [{addr:#06x}]")

    def movdqu_load(self, dst: str, addr: int) -> None:
        """``movdqu xmm, [addr]``: F3 0F 6F /r with ModRM mod=00 rm=110 (disp16).
        Loads 16 bytes with no alignment requirement."""
        modrm = (_xmm(dst) << 3) | MODRM_DISP16
        self._emit(bytes([MOVDQU, 0x0F, 0x6F, modrm]) + _imm(addr, 2), f"movdqu {dst}, [{addr:#06x}]")

    def movdqu_store(self, addr: int, src: str) -> None:
        """``movdqu [addr], xmm``: F3 0F 7F /r with ModRM mod=00 rm=110 (disp16).
        One 16-byte store: the widest single access real-mode code can make."""
        modrm = (_xmm(src) << 3) | MODRM_DISP16
        self._emit(bytes([MOVDQU, 0x0F, 0x7F, modrm]) + _imm(addr, 2), f"movdqu [{addr:#06x}], {src}")

    def movq_load(self, dst: str, addr: int) -> None:
        """``movq mm, [addr]``: 0F 6F /r with ModRM mod=00 rm=110 (disp16).
        One 8-byte load: the 8-byte access KVM's instruction emulator decodes
        (its tables have MMX ``movq``, not SSE's 8-byte forms)."""
        modrm = (_mm(dst) << 3) | MODRM_DISP16
        self._emit(bytes([0x0F, 0x6F, modrm]) + _imm(addr, 2), f"movq {dst}, [{addr:#06x}]")

    def movq_store(self, addr: int, src: str) -> None:
        """``movq [addr], mm``: 0F 7F /r with ModRM mod=00 rm=110 (disp16).
        One 8-byte store."""
        modrm = (_mm(src) << 3) | MODRM_DISP16
        self._emit(bytes([0x0F, 0x7F, modrm]) + _imm(addr, 2), f"movq [{addr:#06x}], {src}")

    def or_reg(self, dst: str, src: str) -> None:
        """``or r/m, r`` register form: 08 /r (8-bit), [66] 09 /r, ModRM mod=11 reg=src rm=dst."""
        d, s = reg(dst), reg(src)
        if d.size != s.size:
            raise ValueError(f"or {dst}, {src}: operand sizes differ")
        opcode = 0x08 if d.size == 1 else 0x09
        modrm = 0b11_000_000 | (s.code << 3) | d.code
        self._emit(_prefix(d.size) + bytes([opcode, modrm]), f"or {dst}, {src}")

    # -- port I/O -------------------------------------------------------------------
    def out_dx(self, size: int) -> None:
        """``out dx, al|ax|eax``: EE (8-bit), EF (16-bit), 66 EF (32-bit)."""
        _check_size(size)
        opcode = 0xEE if size == 1 else 0xEF
        self._emit(_prefix(size) + bytes([opcode]), f"out dx, {ACCUMULATOR[size]}")

    def in_dx(self, size: int) -> None:
        """``in al|ax|eax, dx``: EC (8-bit), ED (16-bit), 66 ED (32-bit)."""
        _check_size(size)
        opcode = 0xEC if size == 1 else 0xED
        self._emit(_prefix(size) + bytes([opcode]), f"in {ACCUMULATOR[size]}, dx")

    def rep_ins(self, size: int) -> None:
        """``rep insb|insw|insd``: F3 6C (8-bit), F3 6D (16-bit), F3 66 6D (32-bit).
        Reads CX elements from port DX to ES:DI; the emulator reads them
        ahead, several per bus access run, which is what the string-PIO
        tests need."""
        _check_size(size)
        opcode = 0x6C if size == 1 else 0x6D
        self._emit(bytes([0xF3]) + _prefix(size) + bytes([opcode]), f"rep ins{'bwd'[size // 2]}")

    def rep_outs(self, size: int) -> None:
        """``rep outsb|outsw|outsd``: F3 6E, F3 6F, F3 66 6F.  Writes CX
        elements from DS:SI to port DX."""
        _check_size(size)
        opcode = 0x6E if size == 1 else 0x6F
        self._emit(bytes([0xF3]) + _prefix(size) + bytes([opcode]), f"rep outs{'bwd'[size // 2]}")

    def cld(self) -> None:
        """``cld``: FC (string instructions count upwards)."""
        self._emit(bytes([0xFC]), "cld")

    # -- arithmetic and control flow ----------------------------------------------------
    def dec(self, dst: str) -> None:
        """``dec r16/r32``: 48+rw / 66 48+rd (the one-byte form exists outside 64-bit mode)."""
        r = reg(dst)
        if r.size == 1:
            raise ValueError("dec of an 8-bit register is not needed here")
        self._emit(_prefix(r.size) + bytes([0x48 + r.code]), f"dec {dst}")

    def jnz(self, target: str) -> None:
        """``jnz rel8``: 75 cb."""
        self._branch(0x75, "jnz", target)

    def jmp(self, target: str) -> None:
        """``jmp rel8``: EB cb."""
        self._branch(0xEB, "jmp", target)

    def loop(self, target: str) -> None:
        """``loop rel8``: E2 cb (decrements CX, branches while CX != 0)."""
        self._branch(0xE2, "loop", target)

    def cpuid(self) -> None:
        """``cpuid``: 0F A2.  Always intercepted by KVM; clobbers EAX/EBX/ECX/EDX."""
        self._emit(bytes([0x0F, 0xA2]), "cpuid")

    def hlt(self) -> None:
        """``hlt``: F4."""
        self._emit(bytes([0xF4]), "hlt")

    def nop(self) -> None:
        """``nop``: 90."""
        self._emit(bytes([0x90]), "nop")

    def int3(self) -> None:
        """``int3``: CC (breakpoint trap, vector 3)."""
        self._emit(bytes([0xCC]), "int3")

    def ud2(self) -> None:
        """``ud2``: 0F 0B (always raises #UD, vector 6)."""
        self._emit(bytes([0x0F, 0x0B]), "ud2")

    def lidt(self, addr: int) -> None:
        """``lidt [addr]``: 0F 01 /3 with ModRM mod=00 reg=3 rm=110 (disp16);
        loads IDTR from a 6-byte limit:base pseudo-descriptor."""
        modrm = (3 << 3) | MODRM_DISP16
        self._emit(bytes([0x0F, 0x01, modrm]) + _imm(addr, 2), f"lidt [{addr:#06x}]")

    # -- protected-mode entry and hypercalls --------------------------------------------
    def inc(self, dst: str) -> None:
        """``inc r16/r32``: 40+rw (one byte; the 66 prefix selects r32)."""
        r = reg(dst)
        if r.size == 1:
            raise ValueError("inc of an 8-bit register is not needed here")
        self._emit(_prefix(r.size) + bytes([0x40 + r.code]), f"inc {dst}")

    def lgdt(self, addr: int) -> None:
        """``lgdt [addr]``: 0F 01 /2 with ModRM mod=00 reg=2 rm=110 (disp16);
        loads GDTR from a 6-byte limit:base pseudo-descriptor."""
        modrm = (2 << 3) | MODRM_DISP16
        self._emit(bytes([0x0F, 0x01, modrm]) + _imm(addr, 2), f"lgdt [{addr:#06x}]")

    def mov_from_cr0(self, dst: str) -> None:
        """``mov r32, cr0``: 0F 20 /r with mod=11 reg=0 (CR0) rm=dst.  No 66
        prefix: moves to and from control registers are always 32 bits here."""
        r = reg(dst)
        if r.size != 4:
            raise ValueError("control registers move through a 32-bit register")
        self._emit(bytes([0x0F, 0x20, 0xC0 | r.code]), f"mov {dst}, cr0")

    def mov_to_cr0(self, src: str) -> None:
        """``mov cr0, r32``: 0F 22 /r with mod=11 reg=0 (CR0) rm=src."""
        r = reg(src)
        if r.size != 4:
            raise ValueError("control registers move through a 32-bit register")
        self._emit(bytes([0x0F, 0x22, 0xC0 | r.code]), f"mov cr0, {src}")

    def mov_to_sreg(self, seg: str, src: str) -> None:
        """``mov Sreg, r16``: 8E /r with mod=11 reg=Sreg rm=src.  In protected
        mode this loads the descriptor the selector names from the GDT."""
        sregs = ("es", "cs", "ss", "ds", "fs", "gs")
        r = reg(src)
        if seg not in sregs or seg == "cs" or r.size != 2:
            raise ValueError(f"mov {seg}, {src}: needs ds/es/ss/fs/gs and a 16-bit register")
        self._emit(bytes([0x8E, 0xC0 | (sregs.index(seg) << 3) | r.code]), f"mov {seg}, {src}")

    def jmp_far_next(self, selector: int) -> None:
        """``jmp ptr16:16`` to the next instruction: EA iw(offset) iw(selector).
        After CR0.PE is set this loads CS from the GDT, which makes the CPU run
        in protected mode at the selector's privilege level (0 here)."""
        target = self.here + 5
        self._emit(bytes([0xEA]) + _imm(target, 2) + _imm(selector, 2),
                   f"jmp {selector:#x}:{target:#x}")

    def vmmcall(self) -> None:
        """``vmmcall``: 0F 01 D9, AMD's hypercall instruction."""
        self._emit(bytes([0x0F, 0x01, 0xD9]), "vmmcall")

    def vmcall(self) -> None:
        """``vmcall``: 0F 01 C1, Intel's hypercall instruction."""
        self._emit(bytes([0x0F, 0x01, 0xC1]), "vmcall")
