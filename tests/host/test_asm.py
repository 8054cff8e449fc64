"""The real-mode emitter and the guest programs, checked two independent ways:
against encodings copied from the Intel SDM, and (when binutils is present)
by disassembling every program with objdump and comparing instruction by
instruction with the emitter's own listing."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from payload.guest import bank, hypercall, programs
from payload.guest.asm import Asm, format_listing
from payload.guest.programs import Access, Program

# --- single instructions vs. the SDM ---------------------------------------------
ENCODINGS: list[tuple[str, Callable[[Asm], None], str]] = [
    ("mov al, imm8", lambda a: a.mov_imm("al", 0x12), "b0 12"),
    ("mov dx, imm16", lambda a: a.mov_imm("dx", 0x600), "ba 00 06"),
    ("mov esi, imm32", lambda a: a.mov_imm("esi", 10), "66 be 0a 00 00 00"),
    ("mov eax, -1", lambda a: a.mov_imm("eax", -1), "66 b8 ff ff ff ff"),
    ("mov eax, ebx", lambda a: a.mov_reg("eax", "ebx"), "66 89 d8"),
    ("mov cl, al", lambda a: a.mov_reg("cl", "al"), "88 c1"),
    ("out dx, al", lambda a: a.out_dx(1), "ee"),
    ("out dx, ax", lambda a: a.out_dx(2), "ef"),
    ("out dx, eax", lambda a: a.out_dx(4), "66 ef"),
    ("in al, dx", lambda a: a.in_dx(1), "ec"),
    ("in ax, dx", lambda a: a.in_dx(2), "ed"),
    ("in eax, dx", lambda a: a.in_dx(4), "66 ed"),
    ("mov [moffs], al", lambda a: a.store(0xC000, "al"), "a2 00 c0"),
    ("mov [moffs], ax", lambda a: a.store(0xC000, "ax"), "a3 00 c0"),
    ("mov [moffs], eax", lambda a: a.store(0xC000, "eax"), "66 a3 00 c0"),
    ("mov [disp16], bl", lambda a: a.store(0x0800, "bl"), "88 1e 00 08"),
    ("mov [disp16], ebx", lambda a: a.store(0x0800, "ebx"), "66 89 1e 00 08"),
    ("mov al, [moffs]", lambda a: a.load("al", 0xC000), "a0 00 c0"),
    ("mov ax, [moffs]", lambda a: a.load("ax", 0xC000), "a1 00 c0"),
    ("mov eax, [moffs]", lambda a: a.load("eax", 0xC000), "66 a1 00 c0"),
    ("mov bx, [disp16]", lambda a: a.load("bx", 0x0010), "8b 1e 10 00"),
    ("or bl, al", lambda a: a.or_reg("bl", "al"), "08 c3"),
    ("or bx, ax", lambda a: a.or_reg("bx", "ax"), "09 c3"),
    ("or ebx, eax", lambda a: a.or_reg("ebx", "eax"), "66 09 c3"),
    ("dec cx", lambda a: a.dec("cx"), "49"),
    ("dec esi", lambda a: a.dec("esi"), "66 4e"),
    ("cpuid", lambda a: a.cpuid(), "0f a2"),
    ("hlt", lambda a: a.hlt(), "f4"),
    ("nop", lambda a: a.nop(), "90"),
    ("int3", lambda a: a.int3(), "cc"),
    ("ud2", lambda a: a.ud2(), "0f 0b"),
    ("lidt [disp16]", lambda a: a.lidt(0x0900), "0f 01 1e 00 09"),
    ("mov es:[moffs], al", lambda a: a.store(0x0000, "al", seg="es"), "26 a2 00 00"),
    ("mov es:[moffs], eax", lambda a: a.store(0x00FF, "eax", seg="es"), "26 66 a3 ff 00"),
    ("mov es:[disp16], bl", lambda a: a.store(0x0010, "bl", seg="es"), "26 88 1e 10 00"),
    ("mov ds:[moffs], al", lambda a: a.store(0xC000, "al", seg="ds"), "a2 00 c0"),  # no prefix
    ("movdqu xmm0, [disp16]", lambda a: a.movdqu_load("xmm0", 0x0C00), "f3 0f 6f 06 00 0c"),
    ("movdqu [disp16], xmm0", lambda a: a.movdqu_store(0x9100, "xmm0"), "f3 0f 7f 06 00 91"),
    ("movdqu [disp16], xmm3", lambda a: a.movdqu_store(0x9100, "xmm3"), "f3 0f 7f 1e 00 91"),
    ("inc edi", lambda a: a.inc("edi"), "66 47"),
    ("inc si", lambda a: a.inc("si"), "46"),
    ("lgdt [disp16]", lambda a: a.lgdt(0x0A18), "0f 01 16 18 0a"),
    ("mov eax, cr0", lambda a: a.mov_from_cr0("eax"), "0f 20 c0"),
    ("mov cr0, eax", lambda a: a.mov_to_cr0("eax"), "0f 22 c0"),
    ("mov ds, ax", lambda a: a.mov_to_sreg("ds", "ax"), "8e d8"),
    ("mov ss, ax", lambda a: a.mov_to_sreg("ss", "ax"), "8e d0"),
    ("mov gs, ax", lambda a: a.mov_to_sreg("gs", "ax"), "8e e8"),
    ("jmp ptr16:16 (next)", lambda a: a.jmp_far_next(0x08), "ea 05 00 08 00"),
    ("vmmcall", lambda a: a.vmmcall(), "0f 01 d9"),
    ("vmcall", lambda a: a.vmcall(), "0f 01 c1"),
    ("movq mm0, [disp16]", lambda a: a.movq_load("mm0", 0x0C20), "0f 6f 06 20 0c"),
    ("movq [disp16], mm0", lambda a: a.movq_store(0xC008, "mm0"), "0f 7f 06 08 c0"),
]


@pytest.mark.parametrize(("name", "emit", "expected"), ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_encoding(name: str, emit: Callable[[Asm], None], expected: str) -> None:
    a = Asm()
    emit(a)
    assert a.assemble() == bytes.fromhex(expected)


def test_branches_resolve_backward_and_forward() -> None:
    a = Asm(origin=0x1000)
    a.label("self")
    a.jmp("self")  # jmp $ : EB FE
    a.label("top")
    a.nop()
    a.dec("si")
    a.jnz("top")  # back over nop(1) + dec(1) + itself(2) = -4
    a.loop("end")  # forward over the nop: +1
    a.nop()
    a.label("end")
    assert a.assemble() == bytes.fromhex("eb fe 90 4e 75 fc e2 01 90")
    assert a.labels == {"self": 0x1000, "top": 0x1002, "end": 0x1009}


@pytest.mark.parametrize(
    ("emit", "message"),
    [
        (lambda a: a.out_dx(8), "1, 2 or 4"),
        (lambda a: a.mov_imm("al", 0x100), "does not fit"),
        (lambda a: a.mov_reg("eax", "bx"), "sizes differ"),
        (lambda a: a.or_reg("al", "bx"), "sizes differ"),
        (lambda a: a.mov_imm("r8", 0), "unknown register"),
        (lambda a: a.movdqu_store(0x9100, "xmm8"), "unknown SSE register"),
        (lambda a: a.movdqu_load("eax", 0x0C00), "unknown SSE register"),
        (lambda a: a.mov_to_cr0("ax"), "32-bit register"),
        (lambda a: a.mov_to_sreg("cs", "ax"), "ds/es/ss/fs/gs"),
        (lambda a: a.mov_to_sreg("ds", "eax"), "16-bit register"),
        (lambda a: a.store(0, "al", seg="xs"), "unknown segment"),
        (lambda a: (a.jmp("nowhere"), a.assemble()), "undefined label"),
        (lambda a: (a.label("x"), a.label("x")), "defined twice"),
        (lambda a: (a.label("x"), [a.nop() for _ in range(200)], a.jnz("x"), a.assemble()), "rel8"),
    ],
)
def test_emitter_rejects_what_it_cannot_encode(emit: Callable[[Asm], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        emit(Asm())


def test_listing_covers_the_code_exactly() -> None:
    program = programs.mmio_read_loop(3, size=2)
    addrs = [addr for addr, _, _ in program.listing]
    assert addrs[0] == program.origin
    assert b"".join(code for _, code, _ in program.listing) == program.code
    for (addr, code, _), nxt in zip(program.listing, addrs[1:], strict=False):
        assert addr + len(code) == nxt
    assert "jnz top" in program.listing_text()


def test_a_program_lists_as_its_assembler_did() -> None:
    """One formatter for both, so a failure message reads the same either way."""
    a = Asm(programs.LOAD_ADDR)
    a.mov_imm("eax", 1)
    a.label("top")
    a.jnz("top")
    program = programs.Program("listed", a.assemble(), a.origin, 0, tuple(a.listing()), a.labels)
    assert program.listing_text() == a.listing_text() == format_listing(a.listing())
    first = a.listing_text().splitlines()[0]
    assert first == f"{programs.LOAD_ADDR:#06x}  {'66 b8 01 00 00 00':<24} mov eax, 0x1"


# --- the program set ----------------------------------------------------------------
def all_programs() -> list[Program]:
    sized = [
        f(5, size)
        for f in (
            programs.pio_write_loop,
            programs.pio_read_loop,
            programs.mmio_write_loop,
            programs.mmio_read_loop,
        )
        for size in (1, 2, 4)
    ]
    edges = programs.access_sequence(
        [
            Access("pio", programs.PIO_PORT, 4),
            Access("pio", programs.PIO_PORT, 2, write=False),
            Access("mmio", programs.MMIO_ADDR, 1),
            Access("mmio", programs.MMIO_ADDR, 4, write=False),
        ]
    )
    return [
        *sized,
        programs.wide_store(programs.MMIO_BASE + 0x100),
        programs.es_write(0x00FF, 4),
        programs.cpuid_loop(5),
        programs.elcr_write_loop(5),
        programs.halt_only(),
        programs.spin_forever(),
        programs.triple_fault(),
        edges,
        hypercall.hv_signal_event_loop(5, 7, "amd"),
        hypercall.hv_signal_event_loop(5, 7, "intel"),
        hypercall.unknown_hypercall_loop(5, "amd"),
        bank.counting_loop(5, "pio", programs.PIO_PORT),
        bank.counting_loop(5, "mmio", programs.MMIO_ADDR),
        bank.register_script([bank.Write("mmio", programs.MMIO_ADDR, 8, 0x1122334455667788),
                              bank.Read("mmio", programs.MMIO_ADDR, 8),
                              bank.Write("pio", programs.PIO_PORT, 2, 0xBEEF),
                              bank.Read("pio", programs.PIO_PORT, 4)]),
    ]


FINISHING = [p for p in all_programs() if p.name not in ("halt_only", "spin_forever", "triple_fault")]


def test_memory_map_is_consistent() -> None:
    assert programs.RESULT_ADDR + 4 <= programs.LOAD_ADDR
    assert programs.IDT_DESC_ADDR + 6 <= programs.LOAD_ADDR
    assert programs.IDT_DESC_ADDR + 6 <= programs.XMM_DATA_ADDR
    assert programs.XMM_DATA_ADDR + 16 <= programs.LOAD_ADDR
    assert programs.MMIO_BASE >= programs.RAM_SIZE
    assert programs.MMIO_BASE <= programs.MMIO_ADDR < programs.MMIO_LIMIT <= 0x10000
    for program in all_programs():
        assert program.origin + len(program.code) <= programs.RAM_SIZE, program.name


@pytest.mark.parametrize("program", FINISHING, ids=[p.name for p in FINISHING])
def test_programs_end_with_done_port_then_hlt(program: Program) -> None:
    texts = [text for _, _, text in program.listing]
    assert texts[-4:] == [f"mov dx, {programs.DONE_PORT:#x}", "out dx, eax", "hlt", "jmp halt"]


def test_zero_iterations_emit_no_loop() -> None:
    texts = [text for _, _, text in programs.pio_write_loop(0).listing]
    assert "out dx, al" not in texts
    assert not any(t.startswith("jnz") for t in texts)


def test_cpuid_loop_counts_outside_cpuid_clobbers() -> None:
    """CPUID overwrites EAX/EBX/ECX/EDX, so neither ``dec ecx`` nor ``loop``
    (which counts in CX) may drive the loop."""
    texts = [text for _, _, text in programs.cpuid_loop(3).listing]
    assert [t for t in texts if t.startswith("dec")] == ["dec esi"]
    assert not any(t.startswith("loop") for t in texts)


@pytest.mark.parametrize(
    "make",
    [
        lambda: programs.mmio_write_loop(1, addr=programs.RAM_SIZE - 1),  # backed by RAM
        lambda: programs.mmio_write_loop(1, size=4, addr=0xFFFE),  # past 64 KiB
        lambda: programs.pio_write_loop(1, size=2, port=0xFFFF),
        lambda: programs.pio_write_loop(1 << 32),
        lambda: programs.pio_write_loop(1, size=8),
        lambda: programs.wide_store(0xFFF8),  # past 64 KiB
        lambda: programs.wide_store(programs.MMIO_ADDR, data=bytes(8)),
        lambda: programs.es_write(0xFFFF, size=2),
        lambda: programs.es_write(0, size=8),
    ],
)
def test_programs_reject_bad_parameters(make: Callable[[], Program]) -> None:
    with pytest.raises(ValueError):
        make()


# --- objdump cross-check ---------------------------------------------------------
OBJDUMP = shutil.which("objdump")
ALIASES = {"jne": "jnz", "lidtw": "lidt", "lgdtw": "lgdt"}
BRANCHES = {"jnz", "jmp", "loop"}
SIZE_PTR = re.compile(r"^[A-Z]+ PTR ")
OBJDUMP_LINE = re.compile(r"^\s*([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)\s*(\S+)\s*(.*)$")


def _operand(text: str) -> str | int:
    """Canonical operand: register name, memory as ``[addr]`` (DS) or
    ``es:[addr]``, or number.  objdump writes ``XMMWORD PTR ds:0xc00`` and
    ``es:0xff`` where the listing has ``[0x0c00]`` and ``es:[0x00ff]``."""
    text = SIZE_PTR.sub("", text.strip())
    seg, _, addr = text.rpartition(":")
    if seg or addr.startswith("["):
        prefix = "" if seg in ("", "ds") else f"{seg}:"
        return f"{prefix}[{int(addr.strip('[]'), 0):#x}]"
    try:
        return int(text, 0)
    except ValueError:
        return text


def _objdump(program: Program, tmp_path: Path) -> list[tuple[int, bytes, str, list[str | int]]]:
    blob = tmp_path / f"{program.name}.bin"
    blob.write_bytes(program.code)
    out = subprocess.run(
        [
            OBJDUMP or "objdump",
            "-D",
            "-b",
            "binary",
            "-m",
            "i8086",
            "-M",
            "intel",
            f"--adjust-vma={program.origin:#x}",
            str(blob),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    insns = []
    for line in out.splitlines():
        m = OBJDUMP_LINE.match(line)
        if m:
            addr, code, op, operands = m.groups()
            ops = [_operand(o) for o in operands.split(",")] if operands else []
            insns.append((int(addr, 16), bytes.fromhex(code), ALIASES.get(op, op), ops))
    return insns


@pytest.mark.skipif(OBJDUMP is None, reason="objdump (binutils) not installed")
@pytest.mark.parametrize("program", all_programs(), ids=[p.name for p in all_programs()])
def test_objdump_agrees_with_listing(program: Program, tmp_path: Path) -> None:
    theirs = _objdump(program, tmp_path)
    ours = program.listing
    assert [(a, c) for a, c, *_ in theirs] == [(a, c) for a, c, _ in ours], "instruction boundaries"
    for (addr, _, op, their_ops), (_, _, text) in zip(theirs, ours, strict=True):
        our_op, _, rest = text.partition(" ")
        assert op == our_op, f"{addr:#x}: objdump says {op}, listing says {text}"
        if our_op in BRANCHES and rest in program.labels:     # a far jmp names no label
            assert their_ops == [program.labels[rest]], f"{addr:#x}: {text} target"
        else:
            our_ops = [_operand(o) for o in rest.split(",")] if rest else []
            assert their_ops == our_ops, f"{addr:#x}: objdump {their_ops} vs listing {text}"
