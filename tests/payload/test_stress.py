"""KVM_IOFD under concurrency; runs as root in the test VM with /dev/doorbell.

A vCPU thread runs a guest that writes one byte to an iofd range in a loop
(the native KVM_RUN loop, GIL released) while disruptor threads:

* ``a``: deassign and re-assign the range, as fast as they go;
* ``b``: close the eventfd (a fresh one takes its place for ``a`` and ``c``);
* ``c``: detach the doorbell from the eventfd and attach it again;
* ``d``: close the VM fd and the vCPU fd while KVM_RUN is in flight.

Every disruptor runs alone with the writer and with each other disruptor
(4 + 6 cases), on the PIO and the MMIO bus, for STRESS_SECONDS (default 2).

How a run ends: the guest polls a flag in its RAM after each write, so once
the disruptors have stopped the test sets the flag and the guest leaves the
loop through DONE_PORT with its write count in EAX; it also stores the
running count in RAM after each write.  ``d`` can end the loop earlier: once
the vCPU fd is closed, the KVM_RUN after the next exit fails (EBADF, or
ENOTTY if ``b`` reused the number for an eventfd).  A thread that does not
end gets KVM's immediate_exit plus SIGUSR1 and the test fails.

What is exact (N = writes the guest made, E = writes that exited to the
VMM, S = signals counted by the doorbell plus what is left in the eventfd):

* without ``a`` the range is registered throughout, so E == 0, even after
  ``b`` closed its eventfd (the iofd holds its own reference) and after
  ``d`` closed the fds (the in-flight KVM_RUN keeps the VM alive);
* without ``b`` the eventfd is never lost, so S + E == N: each write is
  signalled exactly once or exits exactly once (KVM completes an exited
  write on re-entry without dispatching it again).  If ``d`` ended the loop
  at a KVM_RUN after an exit, that last write has exited but the guest has
  not counted it yet, so N is the stored count plus one;
* with ``b`` the signals sent to a closed eventfd are unobservable, so only
  E <= N is checked;
* without ``d`` the run ends at DONE_PORT and the count in EAX equals the
  count in RAM.

Two more tests: two vCPUs writing the same range while ``a`` toggles it
(signals + exits == writes over both), and threads registering and removing
overlapping iofds and ioeventfds at once, after which the VM must hold
nothing (every range registers again, and exactly BUS_LIMIT iofds fit on
each bus).
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from payload.doorbell import Doorbell
from payload.guest import programs
from payload.guest.asm import Asm
from payload.kvm import uapi
from payload.kvm.call import ioctl
from payload.kvm.vmm import Vcpu, Vm, unavailable
from payload.native import build
from payload.native.loop import LoopResult

SECONDS = float(os.environ.get("STRESS_SECONDS", "2"))
JOIN_S = 30.0
"""How long a thread may take to stop once asked, even under TCG."""
DOORBELL_PATH = "/dev/doorbell"

RANGE_LEN = 8
BASES = {"pio": 0x0700, "mmio": 0x9100}
FLAG_ADDR = 0x0A00  # RAM; the test writes non-zero to stop the guest
COUNT_ADDR = 0x0A10  # RAM; the guest stores ESI (the write count) after each write

BUS_LIMIT = 1000
"""api.rst 8.48: devices other than ioeventfds per io bus, then ENOSPC."""

DISRUPTORS = "abcd"
COMBOS = ["".join(c) for n in (1, 2) for c in itertools.combinations(DISRUPTORS, n)]


def _skip_reason() -> str | None:
    if not os.path.exists(DOORBELL_PATH):
        return f"{DOORBELL_PATH} does not exist (doorbell module not loaded)"
    return unavailable()


_WHY = _skip_reason()
if _WHY:
    pytest.skip(_WHY, allow_module_level=True)


# --- the guest ---------------------------------------------------------------------
def writer_program(bus: str) -> programs.Program:
    """Write a byte to the range until FLAG_ADDR is non-zero; report the count."""
    a = Asm(programs.LOAD_ADDR)
    a.mov_imm("eax", programs.PATTERN)
    if bus == "pio":
        a.mov_imm("dx", BASES["pio"])
    a.mov_imm("esi", 0)
    a.label("top")
    if bus == "pio":
        a.out_dx(1)
    else:
        a.store(BASES["mmio"], "al")
    a.inc("esi")
    a.store(COUNT_ADDR, "esi")
    a.load("cx", FLAG_ADDR)
    a.or_reg("cx", "cx")
    a.jnz("stop")
    a.jmp("top")
    a.label("stop")
    a.mov_reg("eax", "esi")
    a.store(programs.RESULT_ADDR, "eax")
    a.mov_imm("dx", programs.DONE_PORT)
    a.out_dx(4)
    a.label("halt")
    a.hlt()
    a.jmp("halt")
    return programs.Program("stress_writer", a.assemble(), a.origin, 0, tuple(a.listing()), a.labels)


# --- the pieces of one run ------------------------------------------------------------------
@dataclass
class VcpuRun:
    """The native loop's outcome; ``ret`` is 0 or -errno."""

    ret: int | None = None
    out: LoopResult = field(default_factory=LoopResult)
    error: BaseException | None = None


@dataclass
class Shared:
    """What the threads share; ``efd`` is the current eventfd's number."""

    efd: int
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    rounds: dict[str, int] = field(default_factory=dict)


def _noop(signum: int, frame: object) -> None:
    pass


@pytest.fixture(autouse=True)
def sigusr1_noop() -> Iterator[None]:
    """SIGUSR1 only interrupts KVM_RUN (the stuck-thread fallback)."""
    previous = signal.signal(signal.SIGUSR1, _noop)
    yield
    signal.signal(signal.SIGUSR1, previous)


def _guarded(shared: Shared, name: str, body: Callable[[], None]) -> Callable[[], None]:
    """Repeat one disruptor step until stop; any exception is an error."""

    def run() -> None:
        rounds = 0
        try:
            while not shared.stop.is_set():
                body()
                rounds += 1
        except BaseException as exc:
            shared.errors.append(f"{name}: {exc!r}")
        finally:
            shared.rounds[name] = rounds

    return run


def _vcpu_thread(vcpu: Vcpu, result: VcpuRun, timeout_s: float) -> threading.Thread:
    lib = build.load()
    fd, run_addr = vcpu.fd, vcpu.run_addr

    def run() -> None:
        try:
            result.ret = lib.vmexit_loop(
                fd, run_addr, -1, 0, programs.DONE_PORT, int(timeout_s * 1e9), ctypes.byref(result.out)
            )
        except BaseException as exc:
            result.error = exc

    return threading.Thread(target=run, name="vcpu", daemon=True)


def _stop_stuck(thread: threading.Thread, run: uapi.KvmRun) -> bool:
    """Make a vCPU thread that ignored the flag leave KVM_RUN; True if it had to."""
    thread.join(JOIN_S)
    if not thread.is_alive():
        return False
    run.immediate_exit = 1  # every KVM_RUN now returns -EINTR at once ...
    deadline = time.monotonic() + 2 * JOIN_S
    while thread.is_alive() and time.monotonic() < deadline:  # ... and the loop's deadline ends it
        if thread.ident is not None:
            signal.pthread_kill(thread.ident, signal.SIGUSR1)
        thread.join(0.05)
    return True


def _take(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


# --- the test ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bus", ["pio", "mmio"])
@pytest.mark.parametrize("combo", COMBOS)
def test_writer_with_disruptors(combo: str, bus: str,
                                record_property: Callable[[str, object], None]) -> None:
    pio = bus == "pio"
    base = BASES[bus]
    with_a, with_b, with_d = ("a" in combo, "b" in combo, "d" in combo)
    rng = random.Random(f"{combo}-{bus}")
    vm = Vm()
    shared = Shared(efd=os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
    db = Doorbell.open(DOORBELL_PATH)
    vcpu_result = VcpuRun()
    vcpu_thread: threading.Thread | None = None

    # Errnos each disruptor may meet, and only in these pairings.
    a_allowed: set[int] = set()
    if with_b:
        a_allowed |= {errno.EBADF, errno.ENOENT, errno.EEXIST}  # the eventfd moved under it
    if with_d:
        a_allowed |= {errno.EBADF, errno.ENOTTY}  # the VM fd is closed (or a new eventfd's number)
    c_allowed = {errno.ENOENT, errno.EBADF} if with_b else set()  # hung up, or closed

    def attempt(allowed: set[int], call: Callable[[], None]) -> None:
        try:
            call()
        except OSError as exc:
            if exc.errno not in allowed:
                raise

    try:
        vm.assign_iofd(base, RANGE_LEN, shared.efd, pio=pio)
        db.attach(shared.efd)
        program = writer_program(bus)
        vm.load(program)
        vcpu = vm.create_vcpu(program.origin)
        run_struct = vcpu.run
        assert run_struct is not None

        # --- the disruptors ---
        vm_fd = vm.fd  # a's own copy of the number: d may close it under a

        def iofd(fd: int, deassign: bool) -> None:
            ioctl(vm_fd, uapi.KVM_IOFD, uapi.iofd_args(base, RANGE_LEN, fd, pio=pio, deassign=deassign))

        def toggle() -> None:
            fd = shared.efd
            attempt(a_allowed, lambda: iofd(fd, True))
            attempt(a_allowed, lambda: iofd(fd, False))

        def close_eventfd() -> None:
            old, shared.efd = shared.efd, os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            os.close(old)
            time.sleep(0.005)

        def reattach() -> None:
            attempt(c_allowed, db.detach)
            attempt(c_allowed, lambda: db.attach(shared.efd))

        def destroy() -> None:
            started = time.monotonic()
            while vm.read(COUNT_ADDR, 4) == bytes(4) and time.monotonic() - started < JOIN_S:
                time.sleep(0.01)  # until the guest has written at least once
            time.sleep(rng.uniform(0, SECONDS / 2))
            vcpu_fd, vm_fd = vcpu.fd, vm.fd
            vcpu.fd = vm.fd = -1  # closed here, so cleanup must not close the numbers again
            os.close(vcpu_fd)
            os.close(vm_fd)
            shared.stop.wait()

        bodies = {"a": toggle, "b": close_eventfd, "c": reattach, "d": destroy}
        disruptors = [
            threading.Thread(target=_guarded(shared, n, bodies[n]), name=n, daemon=True) for n in combo
        ]
        vcpu_thread = _vcpu_thread(vcpu, vcpu_result, SECONDS + 3 * JOIN_S)

        # --- run ---
        vcpu_thread.start()
        for t in disruptors:
            t.start()
        time.sleep(SECONDS)
        shared.stop.set()
        for t in disruptors:
            t.join(JOIN_S)
        hung = [t.name for t in disruptors if t.is_alive()]
        vm.write(FLAG_ADDR, b"\x01\x00")
        stuck = _stop_stuck(vcpu_thread, run_struct)
        assert not hung, f"disruptor threads did not stop: {hung}"
        assert not stuck, "the vCPU thread did not stop after the flag (guest or KVM_RUN hung)"
        assert vcpu_result.error is None, vcpu_result.error
        assert not shared.errors, shared.errors

        # --- the counts ---
        out = vcpu_result.out
        ret = vcpu_result.ret
        exited = out.io_exits + out.mmio_exits
        stored = int.from_bytes(vm.read(COUNT_ADDR, 4), "little")
        attempt({errno.ENOENT} if with_b else set(), db.detach)
        signalled = db.count + (0 if with_b else _take(shared.efd))
        summary = (
            f"{combo}/{bus}: KVM_RUN loop returned {ret}, {stored} writes counted by the guest, "
            f"{exited} exited, {signalled} signals seen, disruptor rounds {shared.rounds}"
        )
        print(summary)

        if ret == 0:
            assert out.end == 2, summary  # LOOP_END_DONE
            assert out.done_value == stored, summary
            pending = 0
        else:
            assert with_d, f"KVM_RUN failed without d: {os.strerror(-ret)}; {summary}"
            assert -ret in (errno.EBADF, errno.ENOTTY), summary
            # Only the KVM_RUN after an exit can see the closed fd.
            assert out.exits >= 1 and out.exit_reason in (uapi.KVM_EXIT_IO, uapi.KVM_EXIT_MMIO), summary
            pending = 1  # that exit's write happened, but the guest has not counted it
        writes = stored + pending
        assert writes > 0, f"the guest never wrote: {summary}"
        if not with_a:
            assert exited == 0, f"the range was registered throughout, yet writes exited: {summary}"
        else:
            # The overlap: writes that landed while the toggler had the range
            # deassigned (they exit) and, unless b swaps the eventfd, while it
            # was assigned (they signal).  Without both, the writer and the
            # toggler never ran interleaved and the test showed nothing.
            assert exited > 0, f"no write landed inside a toggle: no overlap: {summary}"
            assert with_b or signalled > 0, f"no write landed between toggles: {summary}"
            if combo == "a":
                record_property("summary", f"overlap, a/{bus}: {exited} of {writes} writes landed "
                                           f"while deassigned, {signalled} while assigned, over "
                                           f"{shared.rounds.get('a', 0)} toggles")
        if not with_b:
            assert signalled + exited == writes, f"a write was lost or counted twice: {summary}"
        else:
            assert exited <= writes, summary
    finally:
        db.close()
        # Unmapping kvm_run under a running native loop would crash it: leak instead.
        if vcpu_thread is None or not vcpu_thread.is_alive():
            vm.close()  # the VM is destroyed only now, with whatever it still holds
        os.close(shared.efd)


# --- more writers, more registrars ----------------------------------------------------------
def test_two_vcpus_and_a_toggler_count_every_write_once(
        record_property: Callable[[str, object], None]) -> None:
    """Two vCPUs write the same range while it is deassigned and re-assigned:
    signals + exits == writes, summed over both (no ordering between vCPUs
    is promised, but no write may be lost or counted twice)."""
    pio = True
    base = BASES["pio"]
    vm = Vm()
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    db = Doorbell.open(DOORBELL_PATH)
    shared = Shared(efd=efd)
    threads: list[threading.Thread] = []
    try:
        vm.assign_iofd(base, RANGE_LEN, efd, pio=pio)
        db.attach(efd)
        program = writer_program("pio")
        vm.load(program)
        vcpus = [vm.create_vcpu(program.origin) for _ in range(2)]
        results = [VcpuRun() for _ in vcpus]
        threads = [_vcpu_thread(v, r, SECONDS + 3 * JOIN_S) for v, r in zip(vcpus, results, strict=True)]

        def toggle() -> None:
            vm.deassign_iofd(base, RANGE_LEN, efd, pio=pio)
            vm.assign_iofd(base, RANGE_LEN, efd, pio=pio)

        toggler = threading.Thread(target=_guarded(shared, "a", toggle), daemon=True)
        for t in threads:
            t.start()
        toggler.start()
        time.sleep(SECONDS)
        shared.stop.set()
        toggler.join(JOIN_S)
        vm.write(FLAG_ADDR, b"\x01\x00")
        stuck = [_stop_stuck(t, v.run) for t, v in zip(threads, vcpus, strict=True) if v.run is not None]
        assert not toggler.is_alive() and not any(stuck), "a thread did not stop"
        assert not shared.errors, shared.errors
        assert [r.ret for r in results] == [0, 0], [r.error for r in results]
        writes = sum(r.out.done_value for r in results)
        exited = sum(r.out.io_exits for r in results)
        db.detach()
        signalled = db.count + _take(efd)
        print(f"2 vCPUs: {writes} writes, {exited} exited, {signalled} signalled, rounds {shared.rounds}")
        assert all(r.out.done_value > 0 for r in results)
        # The overlap: each vCPU wrote inside a toggle (its write exited).
        per_vcpu = [r.out.io_exits for r in results]
        record_property("summary", f"overlap, 2 vCPUs: {per_vcpu} writes of {writes} landed while "
                                   f"deassigned, per vCPU, over {shared.rounds.get('a', 0)} toggles")
        assert all(per_vcpu), f"a vCPU never wrote inside a toggle: {per_vcpu}"
        assert signalled + exited == writes
    finally:
        db.close()
        if not any(t.is_alive() for t in threads):
            vm.close()
        os.close(efd)


def test_concurrent_assign_deassign_keeps_the_books() -> None:
    """Threads register and remove overlapping iofds and ioeventfds at once.

    Each thread uses its own eventfd, so only it can deassign what it holds:
    every deassign of something it holds must succeed, every other failure
    must be EEXIST (someone else's device overlaps).  Afterwards the VM must
    be empty in every way: each range registers again, and on each bus
    exactly BUS_LIMIT iofds fit (a leaked registration would show as an
    early ENOSPC, a lost count, such as an iofd counted as an ioeventfd, as
    a late one).
    """
    n_threads = 4
    slots = [(0x400 + 4 * i, length) for i in range(24) for length in (2, 4, 8)]
    vm = Vm()
    efds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(n_threads)]
    stop = threading.Event()
    errors: list[str] = []
    done: list[int] = [0] * n_threads
    try:

        def worker(i: int) -> Callable[[], None]:
            rng = random.Random(i)
            held: set[tuple[str, bool, int, int]] = set()

            def call(kind: str, pio: bool, addr: int, length: int, deassign: bool) -> int:
                if kind == "iofd":
                    args = uapi.iofd_args(addr, length, efds[i], pio=pio, deassign=deassign)
                    return vm.try_ioctl(uapi.KVM_IOFD, args)
                args = uapi.ioeventfd_args(addr, length, efds[i], pio=pio, deassign=deassign)
                return vm.try_ioctl(uapi.KVM_IOEVENTFD, args)

            def run() -> None:
                try:
                    while not stop.is_set():
                        kind = "iofd" if rng.random() < 0.8 else "ioeventfd"
                        pio = rng.random() < 0.5
                        addr, length = rng.choice(slots)
                        if kind == "ioeventfd":
                            length = rng.choice((0, 1, 2, 4)) if not pio else rng.choice((1, 2, 4))
                        key = (kind, pio, addr, length)
                        if key in held:
                            err = call(kind, pio, addr, length, True)
                            if err:
                                errors.append(f"thread {i}: deassign {key}: {os.strerror(err)}")
                                return
                            held.discard(key)
                        else:
                            err = call(kind, pio, addr, length, False)
                            if err == 0:
                                held.add(key)
                            elif err != errno.EEXIST:
                                errors.append(f"thread {i}: assign {key}: {os.strerror(err)}")
                                return
                        done[i] += 1
                    for key in sorted(held):
                        err = call(*key, True)
                        if err:
                            errors.append(f"thread {i}: final deassign {key}: {os.strerror(err)}")
                except BaseException as exc:
                    errors.append(f"thread {i}: {exc!r}")

            return run

        threads = [threading.Thread(target=worker(i), daemon=True) for i in range(n_threads)]
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        stop.set()
        for t in threads:
            t.join(JOIN_S)
        assert not any(t.is_alive() for t in threads), "registrar threads hung"
        assert not errors, errors
        print(f"{sum(done)} assign/deassign calls by {n_threads} threads")
        # Nothing is left: the whole region is free on both buses ...
        for pio in (False, True):
            vm.assign_iofd(0x400, 0x100, efds[0], pio=pio)
            vm.deassign_iofd(0x400, 0x100, efds[0], pio=pio)
        # ... and each bus's device count is back to zero: exactly BUS_LIMIT fit.
        for pio, base in ((False, 0x100000), (True, 0x1000)):
            fitted = 0
            for k in range(BUS_LIMIT + 1):
                try:
                    vm.assign_iofd(base + k, 1, efds[0], pio=pio)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, f"{'pio' if pio else 'mmio'} iofd #{k}: {exc}"
                    break
                fitted += 1
            assert fitted == BUS_LIMIT, f"{'pio' if pio else 'mmio'} bus: {fitted} iofds fit"
    finally:
        stop.set()
        vm.close()
        for fd in efds:
            os.close(fd)
