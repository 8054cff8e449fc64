"""KVM_IOFD argument fuzzing against the model; runs as root in the test VM.

The random run takes its seed from FUZZ_SEED if set, else a fresh one, and
prints it first, so a failure replays with
``FUZZ_SEED=<seed> pytest tests/payload/test_fuzz.py`` or
``python -m payload.fuzz --seed <seed> --cases <index + 1>``.  FUZZ_SECONDS
sets its budget (default 20 s; 240-750 cases/s under TCG, about 170 on the
debug kernel).

Both runs are strict: every probe must match the correct model, and that
includes KVM_IOFD_FLAG_BUFFER: the bytes the guest's writes leave in the
pool buffers, the values its reads get from them, and the exits of
accesses whose buffer cannot take them.  test_buffer_cases_agree_with_the_model
runs a fixed list of buffer cases (every kind of buffer, access_ok()'s
edge at the end of user space) through the same machinery;
test_access_and_overlap_cases_agree_with_the_model does the same for api.rst
4.146 "Accesses" (16-byte stores, page-crossing accesses) and "Overlaps"
(coalesced zones, KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2).  The model is the
documented one only: the io-bus ordering bug the fuzzer once found is fixed
by patch 1 of the series, whose invariant (every matching device is found)
the model assumes, and test_io_bus_order_writes_are_claimed pins it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

import payload.fuzz as fuzz
from payload.fuzz import model as m
from payload.fuzz.kvm_side import KvmSide
from payload.fuzz.model import Access, BufRef, Case, FdRef, Model
from payload.guest import programs
from payload.kvm import uapi
from payload.kvm.vmm import Vm, unavailable

SECONDS = float(os.environ.get("FUZZ_SECONDS", "20"))
FIXED_SEED = 20261128
FIXED_CASES = 1500
"""Enough for the opening bulk fill (about 1025 cases with its probes) to
reach ENOSPC, and for some fuzzing with that bus full."""


WHY_NOT = unavailable()
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)


def _run(seed: int, **kwargs: object) -> fuzz.Stats:
    lines: list[str] = []
    try:
        stats = fuzz.run(seed, log=lines.append, **kwargs)  # type: ignore[arg-type]
    except fuzz.Mismatch as exc:
        pytest.fail(exc.report, pytrace=False)
    finally:
        print("\n".join(lines), flush=True)
    return stats


def test_random_seed_agrees_with_the_model(record_property: Callable[[str, object], None]) -> None:
    seed = int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else fuzz.new_seed()
    print(f"FUZZ_SEED={seed}", flush=True)
    stats = _run(seed, seconds=SECONDS)
    # The count and rate of this very run, for the VM suite's summary.
    record_property("summary", f"fuzzer: {stats.cases} cases in {stats.seconds:.1f} s = "
                               f"{stats.rate:.0f} cases/s, FUZZ_SEED={seed}")
    assert stats.cases > 0
    print(stats.coverage(), flush=True)
    assert stats.max_bus_devices == m.NR_IOBUS_DEVS or stats.seconds < 15, (
        "a 15 s run should have filled a bus to its limit"
    )
    if stats.cases >= 3000:  # enough for the buffer mode to show up whatever the seed
        assert stats.buffer_outcomes["assign ok"] and stats.buffer_outcomes["assign EFAULT"]
        assert stats.buffer_stores and stats.buffer_loads and stats.buffer_faults


def test_fixed_seed_replays_identically() -> None:
    """The same seed gives the same cases and the kernel the same answers."""
    first = _run(FIXED_SEED, cases=FIXED_CASES)
    second = _run(FIXED_SEED, cases=FIXED_CASES)
    assert first.cases == second.cases == FIXED_CASES
    assert first.outcomes == second.outcomes
    assert first.outcomes["iofd ENOSPC"] > 0, "the fixed seed reaches the bus limit"
    assert first.max_bus_devices == second.max_bus_devices == m.NR_IOBUS_DEVS
    assert (first.probes, first.probe_accesses) == (second.probes, second.probe_accesses)
    assert first.buffer_outcomes == second.buffer_outcomes
    assert first.buffer_outcomes["assign ok"] > 0 and first.buffer_outcomes["assign EFAULT"] > 0
    counts = (first.buffer_stores, first.buffer_loads, first.buffer_faults)
    assert counts == (second.buffer_stores, second.buffer_loads, second.buffer_faults)
    assert min(counts) > 0, f"the fixed seed exercises buffer stores, loads and faults: {counts}"


def _buffer_cases(user_max: int) -> list[Case]:
    """Assigns with every kind of buffer, then probes through each: api.rst
    4.146 errors 5 and 10 and its "Buffer" paragraph, case by case."""
    efd = FdRef(m.EVENTFD, 0)
    buffered = uapi.KVM_IOFD_FLAG_BUFFER
    pio = uapi.KVM_IOFD_FLAG_PIO

    def assign(addr: int, length: int, ref: BufRef | None, flags: int = buffered) -> Case:
        return Case(m.IOFD, addr, length, efd, flags, buffer=ref)

    ranges = [  # (port, len, buffer): each claims its own 8 ports
        (0x700, 8, BufRef(m.POOL, 0, 0x100)),
        (0x708, 8, BufRef(m.POOL, 1, m.BUF_SIZE - 8)),  # the last 8 bytes of a buffer
        (0x710, 8, BufRef(m.POOL, m.READONLY_SLOT, 0x40)),
        (0x718, 8, BufRef(m.HOLE, offset=0x1000)),
        (0x720, 8, BufRef(m.RAW)),  # NULL: accepted, never accessible
        (0x728, 8, BufRef(m.RAW, raw=user_max - 8)),  # ends at the last user byte
        (0x730, 8, None),  # no buffer: reads are zeros
    ]
    cases = [
        assign(0x738, 8, BufRef(m.RAW, raw=user_max - 7)),  # one byte too far: EFAULT
        assign(0x738, 8, BufRef(m.RAW, raw=0xFFFF800000000000)),  # EFAULT
        assign(0x738, 8, BufRef(m.RAW, raw=(1 << 64) - 8)),  # buffer + len == 2**64: EFAULT
        assign(0x738, 8, BufRef(m.POOL, 0, 0), flags=pio),  # no flag: EINVAL (5)
    ]
    cases += [assign(port, n, ref, pio | (buffered if ref else 0)) for port, n, ref in ranges]
    cases.append(assign(0x700, 8, BufRef(m.RAW, raw=0xFFFF800000000000), pio | buffered))  # 10 before 13
    cases.append(assign(0x9100, 16, BufRef(m.POOL, 0, 0x104)))  # MMIO, aliasing slot 0's bytes
    for port, _, _ in ranges:
        cases.append(
            Case(
                m.PROBE,
                accesses=(
                    Access(True, port + 2, 2, False),
                    Access(True, port, 4, True),
                    Access(True, port + 1, 2, False),
                    Access(True, port + 7, 1, True),
                    Access(True, port + 4, 4, False),
                ),
            )
        )
    cases.append(Case(m.PROBE, accesses=(Access(False, 0x9100, 4, False), Access(False, 0x910C, 4, True))))
    # Write-protected under the live iofd: writes exit unsignalled, reads still
    # work; writable again, writes are stored again.
    port0 = Access(True, 0x700, 2, True), Access(True, 0x700, 2, False)
    cases += [Case(m.PROTECT, slot=0), Case(m.PROBE, accesses=port0)]
    cases.append(Case(m.PROTECT, slot=0, writable=True))
    cases.append(Case(m.PROBE, accesses=(Access(True, 0x703, 1, True), Access(True, 0x700, 4, False))))
    cases.append(Case(m.RESET_VM))  # the buffers outlive the VM ...
    cases.append(assign(0x9100, 16, BufRef(m.POOL, 0, 0x104)))
    cases.append(Case(m.PROBE, accesses=(Access(False, 0x9100, 4, False), Access(False, 0x910C, 4, False))))
    return cases


def test_buffer_cases_agree_with_the_model() -> None:
    """Each case through the fuzzer's own step, on the real kernel: errno,
    exits, signals, read values and every pool buffer byte must match."""
    kvm = KvmSide(fuzz.SLOTS)
    try:
        print(f"USER_PTR_MAX {kvm.user_max:#x}", flush=True)
        model = Model(fuzz.SLOTS, user_max=kvm.user_max)
        stats = fuzz.Stats(0)
        for index, case in enumerate(_buffer_cases(kvm.user_max)):
            problems = fuzz._step(kvm, model, case, stats)
            assert not problems, f"case #{index} {case}:\n" + "\n".join(problems) + "\n" + model.describe()
    finally:
        kvm.close()
    assert stats.buffer_outcomes == {"assign EFAULT": 4, "assign EINVAL": 1, "assign ok": 8}
    # Per range 2 writes, 3 reads: pool 0 and 1 store and load, the read-only
    # one loads and faults its writes, the hole, NULL and the top page fault
    # all 5; then the MMIO range 1 load + 1 store, write-protected 1 fault +
    # 1 load, writable again 1 store + 1 load, and 2 loads after the reset.
    assert (stats.buffer_stores, stats.buffer_loads, stats.buffer_faults) == (6, 14, 18)


def _access_and_overlap_cases() -> list[Case]:
    """api.rst 4.146 "Accesses" and "Overlaps", case by case."""
    efd = FdRef(m.EVENTFD, 0)
    pio = uapi.KVM_IOFD_FLAG_PIO
    buffered = uapi.KVM_IOFD_FLAG_BUFFER

    def assign(addr: int, length: int, flags: int = 0, ref: BufRef | None = None) -> Case:
        return Case(m.IOFD, addr, length, efd, flags, buffer=ref)

    def zone(addr: int, size: int, flags: int = 0) -> Case:
        return Case(m.COALESCED, addr, size, flags=flags)

    wide = m.WIDE_SIZE
    return [
        # Before any probe (no vCPU yet): the in-kernel devices, both orders.
        assign(0x21, 1, pio),
        Case(m.IRQCHIP),  # EEXIST over the PIC's 0x21, creates nothing
        Case(m.RESET_VM),
        assign(0x22, 2, pio),
        assign(0xFEC00100, 4),
        Case(m.IRQCHIP),  # ok: next to the PIC and the IOAPIC
        Case(m.IRQCHIP),  # EEXIST: exists
        assign(0xA1, 1, pio),  # EEXIST: the PIC
        assign(0xFEC000FC, 4),  # EEXIST: the IOAPIC
        assign(0x63, 1, pio),
        Case(m.PIT, flags=m.PIT_SPEAKER_DUMMY),  # EEXIST: the speaker's 0x61-0x64
        Case(m.PIT),  # ok without the speaker
        Case(m.PIT),  # EEXIST: exists
        assign(0x43, 1, pio),  # EEXIST: the PIT
        # Coalesced zones against iofds, both orders, both buses.
        assign(0x700, 8, pio),
        zone(0x707, 2, pio),  # EEXIST
        zone(0x708, 0, pio),  # ok: next to it
        assign(0x708, 1, pio),  # EEXIST: the zero-size zone occupies 0x708
        zone(0x708, 0, pio | uapi.KVM_IOFD_FLAG_DEASSIGN),
        assign(0x708, 1, pio),  # ok now
        zone(0x9800, 0x10),
        assign(0x980F, 4),  # EEXIST
        # Accesses: 16-byte stores and page-crossing accesses.
        assign(0x9100, 0x20, buffered, BufRef(m.POOL, 0, 0x200)),
        assign(0x9200, 12),
        assign(0x9304, 0x20),
        assign(0x8FF0, 0x20, buffered, BufRef(m.POOL, 1, 0x300)),
        assign(0xA000, 8),
        Case(
            m.PROBE,
            accesses=(
                Access(False, 0x9108, wide, True),  # inside: two signals, 16 bytes stored
                Access(False, 0x9200, wide, True),  # second half past the end: 1 signal, 1 exit
                Access(False, 0x9300, wide, True),  # first piece straddles: both exit
                Access(False, 0x8FFE, 4, True),  # page-crossing inside: two signals
                Access(False, 0x8FFD, 4, False),  # page-crossing read from the buffer
                Access(False, 0x9FFF, 2, True),  # first part unclaimed, second claimed
                Access(False, 0x9FFE, 4, False),
                Access(False, 0xAFFC, wide, True),  # page-crossing 16 bytes, nothing there
            ),
        ),
    ]


def test_access_and_overlap_cases_agree_with_the_model() -> None:
    """Each case through the fuzzer's own step, on the real kernel."""
    kvm = KvmSide(fuzz.SLOTS)
    try:
        model = Model(fuzz.SLOTS, user_max=kvm.user_max)
        stats = fuzz.Stats(0)
        for index, case in enumerate(_access_and_overlap_cases()):
            problems = fuzz._step(kvm, model, case, stats)
            assert not problems, f"case #{index} {case}:\n" + "\n".join(problems) + "\n" + model.describe()
    finally:
        kvm.close()
    print(stats.coverage_text(), flush=True)
    pairs = stats.errno_pairs
    assert pairs[("irqchip", "EEXIST")] == 2 and pairs[("irqchip", "ok")] == 1
    assert pairs[("pit", "EEXIST")] == 2 and pairs[("pit", "ok")] == 1
    assert pairs[("coalesced register", "EEXIST")] == 1 and pairs[("coalesced register", "ok")] == 2
    assert pairs[("iofd assign", "EEXIST")] == 5
    assert (stats.buffer_stores, stats.buffer_loads) == (4, 2)


# Each layout: (kind, port, len) in registration order, and the index of the
# device written to.  The first two are the same bug from two sides (the
# kernel loses that device's writes); the last two register the same devices
# in the other order, which works, as a control.
IO_BUS_ORDER_LAYOUTS = {
    "iofd-write-exits": (
        [("iofd", 0x600, 1), ("ioeventfd", 0x708, 0), ("iofd", 0x700, 8)],
        2,  # a write inside [0x700, 0x708) exits instead of signalling
    ),
    "ioeventfd-write-exits": (
        [("ioeventfd", 0x708, 0), ("iofd", 0x700, 8)],
        0,  # the pre-existing ioeventfd at 0x708 stops working
    ),
    "control-iofd-first": (
        [("iofd", 0x600, 1), ("iofd", 0x700, 8), ("ioeventfd", 0x708, 0)],
        1,
    ),
    "control-ioeventfd-last": (
        [("iofd", 0x700, 8), ("ioeventfd", 0x708, 0)],
        1,
    ),
}


@pytest.mark.parametrize("layout", IO_BUS_ORDER_LAYOUTS, ids=list(IO_BUS_ORDER_LAYOUTS))
def test_io_bus_order_writes_are_claimed(layout: str) -> None:
    """Claimed writes never exit, whatever the registration order.

    api.rst 4.146 promises that a write entirely inside an iofd range
    signals its eventfd without an exit, and KVM_IOEVENTFD keeps working
    next to it.  Before patch 1 ("Find every matching device on an I/O
    bus"), a zero-length ioeventfd at X registered before a range ending at
    X lost one of the two; registered in the other order (the controls) the
    same devices work.  Mainline has the same loss with ioeventfds alone.
    """
    devices, victim = IO_BUS_ORDER_LAYOUTS[layout]
    n = 4
    efds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in devices]
    try:
        with Vm() as vm:
            for (kind, addr, length), efd in zip(devices, efds, strict=True):
                if kind == "iofd":
                    vm.assign_iofd(addr, length, efd, pio=True)
                else:
                    vm.ioeventfd(addr, length, efd, pio=True)
            vm.load(programs.pio_write_loop(n, 1, port=devices[victim][1]))
            result = vm.create_vcpu().run_to_halt(timeout_s=60)
        try:
            signalled = os.eventfd_read(efds[victim])
        except BlockingIOError:
            signalled = 0
    finally:
        for efd in efds:
            os.close(efd)
    kind, addr, _ = devices[victim]
    order = ", ".join(f"{k} {a:#x}+{length}" for k, a, length in devices)
    assert (result.exits, signalled) == (1, n), (
        f"{n} writes to the {kind} at port {addr:#x}: {result.exits - 1} exited to userspace, "
        f"{signalled} signalled (registered in this order: {order})"
    )
