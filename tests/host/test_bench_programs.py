"""The benchmark's guest loops (payload.guest.programs.bench_*) and which
one each mode runs.  No VM needed; objdump checks the encodings as
test_asm.py does for the other programs."""

from __future__ import annotations

from pathlib import Path

import pytest

from payload.guest import hypercall, programs
from payload.guest.programs import Program
from payload.vmexit import modes
from payload.vmexit.rig import program
from tests.host import test_asm

N = 5


def bench_programs() -> list[Program]:
    return [
        programs.bench_write_loop(N, "pio", programs.PIO_PORT, last=0xC3),
        programs.bench_write_loop(N, "mmio", programs.MMIO_ADDR, last=0xC3),
        programs.bench_write_loop(N, "pio", programs.ELCR_PORT, value=0),
        programs.bench_write_loop(1, "mmio", programs.MMIO_ADDR, last=0xC3),
        programs.bench_write_loop(N, "mmio", programs.MMIO_ADDR, size=4),
        programs.bench_cpuid_loop(N),
    ]


@pytest.mark.skipif(test_asm.OBJDUMP is None, reason="objdump (binutils) not installed")
@pytest.mark.parametrize("prog", bench_programs(), ids=lambda p: p.name)
def test_objdump_agrees_with_listing(prog: Program, tmp_path: Path) -> None:
    test_asm.test_objdump_agrees_with_listing(prog, tmp_path)


@pytest.mark.parametrize("prog", bench_programs(), ids=lambda p: p.name)
def test_reports_its_count_at_done(prog: Program) -> None:
    texts = [text for _, _, text in prog.listing]
    assert texts[0] == f"mov {programs.ITERATION_COUNTER}, 0x0"
    assert texts[-6:] == ["mov eax, edi", "mov [0x0800], eax", f"mov dx, {programs.DONE_PORT:#x}",
                          "out dx, eax", "hlt", "jmp halt"]
    assert prog.origin + len(prog.code) <= programs.RAM_SIZE


def _simulate(prog: Program) -> tuple[list[int], int]:
    """Run a write loop's listing on a toy register file: (values written, EDI).

    Enough of x86 for these loops (mov imm/reg, out/store, inc, dec, jnz), so the
    test checks the program's behaviour, not only its shape."""
    regs = {"eax": 0, "esi": 0, "edi": 0, "edx": 0}
    zf = False
    writes: list[int] = []
    by_addr = {addr: text for addr, _, text in prog.listing}
    pc = prog.origin
    for _ in range(10_000):
        text = by_addr[pc]
        op, _, rest = text.partition(" ")
        nxt = pc + len(next(code for a, code, _ in prog.listing if a == pc))
        if text.startswith("out dx, eax"):  # DONE
            return writes, regs["edi"]
        if op == "mov" and rest.startswith(("eax, edi",)):
            regs["eax"] = regs["edi"]
        elif op == "mov" and rest.startswith("["):
            if "0x0800" not in rest:
                writes.append(regs["eax"] & 0xFF)
        elif op == "mov":
            dst, src = (x.strip() for x in rest.split(","))
            regs["edx" if dst == "dx" else dst] = int(src, 0)
        elif op == "out":
            writes.append(regs["eax"] & 0xFF)
        elif op in ("inc", "dec"):
            regs[rest] = (regs[rest] + (1 if op == "inc" else -1)) % (1 << 32)
            zf = regs[rest] == 0
        elif op == "jnz":
            nxt = nxt if zf else prog.labels[rest]
        else:
            raise AssertionError(f"{pc:#x}: the toy cannot run {text!r}")
        pc = nxt
    raise AssertionError("the loop did not reach DONE")


@pytest.mark.parametrize("n", [1, 2, 5, 300])
@pytest.mark.parametrize("bus", ["pio", "mmio"])
def test_write_loop_writes_n_values_the_last_one_distinct(n: int, bus: str) -> None:
    addr = programs.PIO_PORT if bus == "pio" else programs.MMIO_ADDR
    writes, edi = _simulate(programs.bench_write_loop(n, bus, addr, value=0x78, last=0xC3))
    assert writes == [0x78] * (n - 1) + [0xC3]
    assert edi == n


def test_without_last_every_write_is_the_same() -> None:
    writes, edi = _simulate(programs.bench_write_loop(4, "pio", programs.ELCR_PORT, value=0))
    assert writes == [0, 0, 0, 0] and edi == 4


def test_zero_iterations_write_nothing_and_count_zero() -> None:
    writes, edi = _simulate(programs.bench_write_loop(0, "pio", programs.PIO_PORT, last=0xC3))
    assert writes == [] and edi == 0


@pytest.mark.parametrize("make", [
    lambda: programs.bench_write_loop(1, "dma", 0),
    lambda: programs.bench_write_loop(1, "mmio", programs.RAM_SIZE - 1),
    lambda: programs.bench_write_loop(1, "pio", 0xFFFF, size=2),
    lambda: programs.bench_write_loop(1 << 32, "pio", programs.PIO_PORT),
])
def test_bad_parameters_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_every_write_mode_runs_the_same_loop_but_kernel_pio() -> None:
    """A buffer mode differs from its plain twin only in the registration."""
    for bus in ("pio", "mmio"):
        same = {program(modes.get(name), N).code for name in modes.NAMES
                if modes.get(name).bus == bus and modes.get(name).path != "kernel"}
        assert len(same) == 1, bus
    kernel = _simulate(program(modes.get("kernel-pio"), N))
    assert kernel == ([0] * N, N)
    plain = _simulate(program(modes.get("iofd-pio"), N))
    assert plain[0][-1] == modes.LAST_WRITE and set(plain[0][:-1]) == {modes.WRITE_VALUE}
    texts = [t for _, _, t in program(modes.get("cpuid"), N).listing]
    assert "cpuid" in texts and [t for t in texts if t.startswith(("inc", "dec"))] == ["inc edi", "dec esi"]


@pytest.mark.parametrize(("vendor", "insn"), [("amd", "vmmcall"), ("intel", "vmcall")])
def test_the_hypercall_modes_run_the_hypercall_loops(vendor: str, insn: str) -> None:
    """hc signals connection 7, the id its rig binds; hc-floor asks for a
    number KVM does not know; both with the vendor's instruction."""
    hc = program(modes.get("hc"), N, vendor)
    assert hc.code == hypercall.hv_signal_event_loop(N, 7, vendor).code
    floor = program(modes.get("hc-floor"), N, vendor)
    assert floor.code == hypercall.unknown_hypercall_loop(N, vendor).code
    for prog in (hc, floor):
        texts = [t for _, _, t in prog.listing]
        assert texts.count(insn) == 1 and "inc edi" in texts
    assert "mov ecx, 0x7" in [t for _, _, t in hc.listing]
    assert modes.HC_CONN_ID == 7


def test_a_scale_row_runs_its_plain_modes_program() -> None:
    for m in modes.SCALE_MODES:
        assert program(m, N).code == program(modes.get(m.base or ""), N).code
