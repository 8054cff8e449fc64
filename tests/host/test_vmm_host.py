"""The VMM, the guest programs and the native loop on this machine's /dev/kvm.

Only mainline KVM is needed (no KVM_IOFD), so this runs wherever /dev/kvm can
run a real-mode guest; it is skipped, with the reason, where it cannot.
Counts are exact on purpose: the benchmark's whole claim is "N exits become
1", so the baseline of N + 1 must be exact too.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from payload.guest import programs
from payload.guest.programs import Access, Program
from payload.kvm import uapi
from payload.kvm.vmm import Exit, GuestError, GuestTimeout, RunResult, Vm
from payload.native import bank as device_native
from payload.native import build, run_native
from payload.native.loop import LoopCommon, LoopResult

N = 50
SIZES = (1, 2, 4)


def _kvm_unusable() -> str | None:
    """Why this machine cannot run the tests, or None if it can.

    Opening /dev/kvm is not enough (nested or paravirtual setups may create
    VMs that cannot run), so the probe runs a one-instruction HLT guest.
    """
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user"
    try:
        with Vm() as vm:
            vm.load(programs.halt_only())
            result = vm.create_vcpu().run_to_halt(timeout_s=5)
    except (OSError, RuntimeError) as exc:  # GuestError is a RuntimeError
        return f"/dev/kvm cannot run a real-mode HLT guest: {exc}"
    if result.end != "hlt" or result.exits != 1:
        return f"/dev/kvm ran the HLT guest oddly: {result}"
    return None


@pytest.fixture(scope="module")
def kvm_usable() -> None:
    reason = _kvm_unusable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def vm(kvm_usable: None) -> Iterator[Vm]:
    with Vm() as machine:
        yield machine


@pytest.fixture
def efd() -> Iterator[int]:
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    yield fd
    os.close(fd)


@pytest.fixture
def efd2() -> Iterator[int]:
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    yield fd
    os.close(fd)


def eventfd_count(fd: int) -> int:
    """Read and reset the eventfd counter; 0 if it was never signalled."""
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


def run(vm: Vm, program: Program, handler: Callable[[Exit], int | None] | None = None) -> RunResult:
    vm.load(program)
    return vm.create_vcpu().run_to_halt(handler=handler, timeout_s=10)


def mask(size: int) -> int:
    return (1 << 8 * size) - 1


def result_word(vm: Vm) -> int:
    return int.from_bytes(vm.read(programs.RESULT_ADDR, 4), "little")


# --- exits to userspace --------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
def test_pio_writes_exit_once_each(vm: Vm, size: int) -> None:
    seen: list[Exit] = []
    result = run(vm, programs.pio_write_loop(N, size), seen.append)
    assert seen == [Exit("io", programs.PIO_PORT, size, True, programs.PATTERN & mask(size))] * N
    assert result.exits == N + 1  # N writes + the DONE_PORT write
    assert result.by_reason == {"KVM_EXIT_IO": N + 1}
    assert (result.end, result.handled, result.interrupted) == ("done", N, 0)


@pytest.mark.parametrize("size", SIZES)
def test_mmio_writes_exit_once_each(vm: Vm, size: int) -> None:
    seen: list[Exit] = []
    result = run(vm, programs.mmio_write_loop(N, size), seen.append)
    assert seen == [Exit("mmio", programs.MMIO_ADDR, size, True, programs.PATTERN & mask(size))] * N
    assert result.exits == N + 1
    assert result.by_reason == {"KVM_EXIT_MMIO": N, "KVM_EXIT_IO": 1}


@pytest.mark.parametrize("size", SIZES)
def test_mmio_reads_without_handler_return_zero(vm: Vm, size: int) -> None:
    result = run(vm, programs.mmio_read_loop(N, size))
    assert result.exits == N + 1
    assert result.by_reason == {"KVM_EXIT_MMIO": N, "KVM_EXIT_IO": 1}
    assert result.done_value == 0
    assert result_word(vm) == 0


@pytest.mark.parametrize("size", SIZES)
def test_pio_reads_without_handler_return_zero(vm: Vm, size: int) -> None:
    result = run(vm, programs.pio_read_loop(N, size))
    assert result.exits == N + 1
    assert result.done_value == 0


@pytest.mark.parametrize("size", SIZES)
def test_reads_return_the_handler_value(vm: Vm, size: int) -> None:
    """Proves read data really reaches the guest, so "zero" above means zero."""
    result = run(vm, programs.mmio_read_loop(3, size), lambda exit_: 0xA5A5A5A5)
    assert result.done_value == 0xA5A5A5A5 & mask(size)
    assert result_word(vm) == 0xA5A5A5A5 & mask(size)


def test_access_sequence_reports_each_access(vm: Vm) -> None:
    accesses = [
        Access("pio", 0x700, 2),
        Access("mmio", 0x9000, 4),
        Access("pio", 0x701, 1, write=False),
        Access("mmio", 0x9003, 1, write=False),
    ]
    seen: list[Exit] = []
    result = run(vm, programs.access_sequence(accesses), lambda e: seen.append(e) or 0)
    assert [(e.kind, e.addr, e.size, e.is_write) for e in seen] == [
        ("io", 0x700, 2, True),
        ("mmio", 0x9000, 4, True),
        ("io", 0x701, 1, False),
        ("mmio", 0x9003, 1, False),
    ]
    assert result.exits == len(accesses) + 1


# --- exits handled in the kernel ---------------------------------------------------------
def test_cpuid_never_reaches_userspace(vm: Vm) -> None:
    result = run(vm, programs.cpuid_loop(N))
    assert result.exits == 1
    assert result.by_reason == {"KVM_EXIT_IO": 1}
    assert result.end == "done"


def test_elcr_writes_stay_in_kernel_with_irqchip(vm: Vm) -> None:
    vm.create_irqchip()
    result = run(vm, programs.elcr_write_loop(N))
    assert result.exits == 1


def test_elcr_writes_exit_without_irqchip(vm: Vm) -> None:
    result = run(vm, programs.elcr_write_loop(N))
    assert result.exits == N + 1


@pytest.mark.parametrize("size", SIZES)
def test_ioeventfd_pio_wildcard(vm: Vm, efd: int, size: int) -> None:
    vm.ioeventfd(programs.PIO_PORT, size, efd, pio=True)
    result = run(vm, programs.pio_write_loop(N, size))
    assert result.exits == 1
    assert eventfd_count(efd) == N


@pytest.mark.parametrize("length", [1, 2, 4, 0])
def test_ioeventfd_mmio_wildcard(vm: Vm, efd: int, length: int) -> None:
    """length 0 is KVM_CAP_IOEVENTFD_NO_LENGTH's "any access size"."""
    vm.ioeventfd(programs.MMIO_ADDR, length, efd)
    result = run(vm, programs.mmio_write_loop(N, length or 4))
    assert result.exits == 1
    assert eventfd_count(efd) == N


def test_ioeventfd_datamatch_miss_exits(vm: Vm, efd: int) -> None:
    vm.ioeventfd(programs.PIO_PORT, 1, efd, pio=True, datamatch=0x00)
    result = run(vm, programs.pio_write_loop(N, 1, value=0x01))
    assert result.exits == N + 1
    assert eventfd_count(efd) == 0


def test_ioeventfd_deassign(vm: Vm, efd: int) -> None:
    vm.ioeventfd(programs.PIO_PORT, 1, efd, pio=True)
    vm.ioeventfd(programs.PIO_PORT, 1, efd, pio=True, deassign=True)
    result = run(vm, programs.pio_write_loop(N, 1))
    assert result.exits == N + 1
    assert eventfd_count(efd) == 0
    with pytest.raises(OSError) as excinfo:
        vm.ioeventfd(programs.PIO_PORT, 1, efd, pio=True, deassign=True)
    assert excinfo.value.errno == errno.ENOENT


# --- in-kernel devices and coalesced writes -------------------------------------------------
@pytest.mark.parametrize("bus", ["pio", "mmio"])
def test_coalesced_writes_queue_in_the_ring(vm: Vm, bus: str) -> None:
    addr = programs.PIO_PORT if bus == "pio" else programs.MMIO_ADDR
    vm.register_coalesced_mmio(addr, 4, pio=bus == "pio")
    result = run(vm, programs.access_sequence([Access(bus, addr, 2)] * 3))
    assert result.exits == 1
    kind = "io" if bus == "pio" else "mmio"
    assert vm.vcpus[0].take_coalesced() == [Exit(kind, addr, 2, True, programs.PATTERN & 0xFFFF)] * 3
    assert vm.vcpus[0].take_coalesced() == []  # taking them freed them


@pytest.mark.parametrize("irqchip", [False, True])
def test_es_write_reaches_the_ioapic(vm: Vm, irqchip: bool) -> None:
    """ES's base moved to 0xfec00000 reaches the IOAPIC from real mode: the
    in-kernel one takes the write; without it the write exits there."""
    if irqchip:
        vm.create_irqchip()
    vm.load(programs.es_write(0, 1))
    vcpu = vm.create_vcpu()
    vcpu.set_segment_base("es", 0xFEC00000)
    seen: list[Exit] = []
    vcpu.run_to_halt(handler=seen.append, timeout_s=10)
    assert seen == ([] if irqchip else [Exit("mmio", 0xFEC00000, 1, True, programs.PATTERN & 0xFF)])


@pytest.mark.parametrize("speaker_dummy", [False, True])
def test_pit2_claims_the_speaker_port_only_with_the_dummy_flag(vm: Vm, speaker_dummy: bool) -> None:
    vm.create_irqchip()
    vm.create_pit2(speaker_dummy=speaker_dummy)
    seen: list[Exit] = []
    run(vm, programs.access_sequence([Access("pio", 0x43, 1), Access("pio", 0x61, 1)]), seen.append)
    assert seen == ([] if speaker_dummy else [Exit("io", 0x61, 1, True, programs.PATTERN & 0xFF)])


# --- how KVM splits one guest access into io bus accesses -------------------------------------
WIDE_ADDR = 0x9100


def run_sse(vm: Vm, program: Program, handler: Callable[[Exit], int | None] | None = None) -> RunResult:
    vm.load(program)
    vcpu = vm.create_vcpu()
    vcpu.enable_sse()
    return vcpu.run_to_halt(handler=handler, timeout_s=10)


def test_sse_store_is_two_8_byte_bus_writes(vm: Vm, efd: int, efd2: int) -> None:
    vm.ioeventfd(WIDE_ADDR, 8, efd)
    vm.ioeventfd(WIDE_ADDR + 8, 8, efd2)
    assert run_sse(vm, programs.wide_store(WIDE_ADDR)).exits == 1
    assert (eventfd_count(efd), eventfd_count(efd2)) == (1, 1)


def test_sse_store_exits_with_the_8_bytes_no_device_took(vm: Vm, efd: int) -> None:
    vm.ioeventfd(WIDE_ADDR, 8, efd)
    seen: list[Exit] = []
    result = run_sse(vm, programs.wide_store(WIDE_ADDR), seen.append)
    high = int.from_bytes(programs.WIDE_PATTERN[8:], "little")
    assert seen == [Exit("mmio", WIDE_ADDR + 8, 8, True, high)]
    assert (result.exits, eventfd_count(efd)) == (2, 1)


def test_page_crossing_store_is_one_bus_write_per_page(vm: Vm, efd: int, efd2: int) -> None:
    boundary = programs.MMIO_ADDR
    vm.ioeventfd(boundary - 2, 2, efd)
    vm.ioeventfd(boundary, 2, efd2)
    assert run(vm, programs.access_sequence([Access("mmio", boundary - 2, 4)])).exits == 1
    assert (eventfd_count(efd), eventfd_count(efd2)) == (1, 1)


# --- misbehaving guests --------------------------------------------------------------------
def test_guest_that_never_halts_times_out_naming_rip(vm: Vm) -> None:
    vm.load(programs.spin_forever())
    vcpu = vm.create_vcpu()
    before = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    with pytest.raises(GuestTimeout, match=r"RIP 0x1000\b") as excinfo:
        vcpu.run_to_halt(timeout_s=0.3)
    assert time.monotonic() - start < 5
    assert excinfo.value.rip == programs.LOAD_ADDR
    # The watchdog must not outlive the run.
    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_triple_fault_is_reported_as_shutdown(vm: Vm) -> None:
    vm.load(programs.triple_fault())
    with pytest.raises(GuestError, match="KVM_EXIT_SHUTDOWN at RIP 0x") as excinfo:
        vm.create_vcpu().run_to_halt(timeout_s=10)
    assert excinfo.value.reason == uapi.KVM_EXIT_SHUTDOWN


def test_handler_errors_propagate(vm: Vm) -> None:
    def handler(exit_: Exit) -> None:
        raise ValueError("device model failed")

    with pytest.raises(ValueError, match="device model failed"):
        run(vm, programs.pio_write_loop(1), handler)


def test_iofd_errors_carry_errno(vm: Vm, efd: int) -> None:
    """Whatever the kernel, a bad call must surface as OSError with errno
    and the ioctl's name, and its raw form must return that errno."""
    args = uapi.iofd_args(programs.MMIO_ADDR, 4, efd)
    args.flags |= 1 << 31
    with pytest.raises(OSError, match="KVM_IOFD") as excinfo:
        vm.ioctl(uapi.KVM_IOFD, args)
    assert excinfo.value.errno in (errno.EINVAL, errno.ENOTTY)
    assert vm.try_ioctl(uapi.KVM_IOFD, args) == excinfo.value.errno


def test_raw_ioctl_returns_a_create_call_s_fd(vm: Vm) -> None:
    """The raw form's return value is what the kernel returned: a vCPU fd."""
    created = vm.raw_ioctl(uapi.KVM_CREATE_VCPU, 0)
    assert created.errno == 0 and created.ret >= 0
    try:
        assert os.readlink(f"/proc/self/fd/{created.ret}") == "anon_inode:kvm-vcpu:0"
        assert vm.try_ioctl(uapi.KVM_CREATE_VCPU, 0) == errno.EEXIST  # id 0 is taken
    finally:
        os.close(created.ret)


# --- the native loop --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "io", "mmio"),
    [
        (lambda: programs.pio_write_loop(N, 2), N, 0),
        (lambda: programs.mmio_write_loop(N, 4), 0, N),
        (lambda: programs.cpuid_loop(N), 0, 0),
    ],
)
def test_native_counts_match_python(vm: Vm, make: Callable[[], Program], io: int, mmio: int) -> None:
    vm.load(make())
    result = run_native(vm.create_vcpu())
    assert (result.exits, result.io_exits, result.mmio_exits) == (io + mmio + 1, io, mmio)
    assert (result.end, result.rings, result.interrupted) == ("done", 0, 0)
    assert result.ns > 0


@pytest.mark.parametrize("size", SIZES)
def test_native_zero_fills_reads(vm: Vm, size: int) -> None:
    vm.load(programs.mmio_read_loop(N, size))
    result = run_native(vm.create_vcpu())
    assert result.done_value == 0
    assert result.exits == N + 1


def test_native_with_ioeventfd_exits_once(vm: Vm, efd: int) -> None:
    vm.ioeventfd(programs.PIO_PORT, 1, efd, pio=True)
    vm.load(programs.pio_write_loop(N, 1))
    result = run_native(vm.create_vcpu())
    assert result.exits == 1
    assert eventfd_count(efd) == N


def test_native_rings_once_per_device_exit(vm: Vm, efd: int) -> None:
    """FIOCLEX stands in for the doorbell's RING: an argument-less ioctl
    that succeeds on any fd."""
    vm.load(programs.pio_write_loop(N, 1))
    result = run_native(vm.create_vcpu(), ring_fd=efd, ring_cmd=termios.FIOCLEX)
    assert result.rings == N
    assert result.exits == N + 1


def test_native_ring_failure_is_oserror(vm: Vm, efd: int) -> None:
    vm.load(programs.pio_write_loop(N, 1))
    with pytest.raises(OSError) as excinfo:
        run_native(vm.create_vcpu(), ring_fd=efd, ring_cmd=0xDEAD)
    assert excinfo.value.errno == errno.ENOTTY


def test_native_times_out(vm: Vm) -> None:
    vm.load(programs.spin_forever())
    with pytest.raises(GuestTimeout, match=r"RIP 0x1000\b"):
        run_native(vm.create_vcpu(), timeout_s=0.3)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_native_reports_shutdown(vm: Vm) -> None:
    vm.load(programs.triple_fault())
    with pytest.raises(GuestError, match="KVM_EXIT_SHUTDOWN") as excinfo:
        run_native(vm.create_vcpu())
    assert excinfo.value.reason == uapi.KVM_EXIT_SHUTDOWN


def test_vm_close_is_idempotent(kvm_usable: None) -> None:
    machine = Vm()
    machine.create_vcpu()
    machine.close()
    machine.close()


# --- building the native loop (no KVM needed) --------------------------------------------------
@pytest.fixture(autouse=True)
def _no_cache_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KVM_IOFD_CACHE", raising=False)


def test_native_build_is_cached_by_source_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = build.build()
    assert first.parent == tmp_path / "kvm-iofd" / "native"
    stamp = first.stat().st_mtime_ns
    assert build.build() == first  # unchanged source: no rebuild
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp files left


def test_an_edit_of_the_shared_header_rebuilds_every_loop(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Both loops include kvm_loop.h: a change there must not reuse a stale library."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    header = tmp_path / "kvm_loop.h"
    header.write_text(build.HEADER.read_text())
    monkeypatch.setattr(build, "HEADER", header)
    sources = (build.SOURCE, device_native.SOURCE)
    before = [build.build(source=s) for s in sources]
    header.write_text(header.read_text() + "/* edited */\n")
    after = [build.build(source=s) for s in sources]
    assert all(a != b and a.is_file() for a, b in zip(after, before, strict=True))


@pytest.mark.parametrize("source, struct, mirror", [
    (build.SOURCE, "loop_result", LoopResult),
    (device_native.SOURCE, "bank_loop_result", device_native.BankLoopResult),
])
def test_loop_results_mirror_the_c_structs(tmp_path: Path, source: Path, struct: str,
                                           mirror: type[ctypes.Structure]) -> None:
    """The ctypes mirrors against the compiler's own layout: every member's
    offset (the common counts through the embedded struct) and the size."""
    members = ([f"c.{name}" for name, _ in LoopCommon._fields_]
               + [name for name, _ in mirror._fields_ if name != "c"])
    prints = "".join(f'\tprintf("{m} %zu\\n", offsetof(struct {struct}, {m}));\n' for m in members)
    program = tmp_path / "layout.c"
    program.write_text(f'#include <stddef.h>\n#include <stdio.h>\n#include "{source}"\n'
                       f'int main(void)\n{{\n{prints}\tprintf("size %zu\\n", sizeof(struct {struct}));\n'
                       "\treturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([build.compiler(), f"-I{build.HEADER.parent}", "-o", str(exe), str(program)], check=True)
    got = dict(line.split() for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                       check=True).stdout.splitlines())
    common = mirror.c.offset
    want = {m: (common + getattr(LoopCommon, m[2:]).offset if m.startswith("c.")
                else getattr(mirror, m).offset) for m in members}
    want["size"] = ctypes.sizeof(mirror)
    assert {k: int(v) for k, v in got.items()} == want


def test_native_build_goes_where_the_host_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host passes its resolved cache down as KVM_IOFD_CACHE (or names the dir)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("KVM_IOFD_CACHE", str(tmp_path / "c"))
    assert build.build().parent == tmp_path / "c" / "native"
    assert build.build(out_dir=tmp_path / "d").parent == tmp_path / "d"


def test_native_build_falls_back_when_cache_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"  # a file where the cache dir's parent should be
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert build.build().is_file()


def test_native_build_reports_compiler_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int f(void) { return; }\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(build, "SOURCE", broken)
    with pytest.raises(RuntimeError, match=r"broken\.c"):
        build.build()
