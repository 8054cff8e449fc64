"""Tests of the doorbell module; they run as root inside the test VM.

DOORBELL_KO names the doorbell.ko built for the guest kernel.  The VM is slow
(TCG, one vCPU), so loops are counted in thousands and the race tests stop on
a deadline rather than after a fixed number of rounds.  Every test also fails
if the kernel log gained a splat while it ran.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from payload.doorbell import (
    DEFAULT_PATH,
    DOORBELL_GET_COUNT,
    DOORBELL_IOCTL_TYPE,
    Doorbell,
)
from payload.eventfd import EventFd
from payload.kvm.call import try_ioctl

KO = os.environ.get("DOORBELL_KO", "")
if not KO:
    pytest.skip(
        "DOORBELL_KO is not set; it names doorbell.ko and these tests run as root inside the test VM",
        allow_module_level=True,
    )

# Absolute, so that a relative DOORBELL_KO survives any chdir.
KO = os.path.abspath(KO)
MODULE = "doorbell"
SYSFS = Path("/sys/module") / MODULE

# Kernel log lines that mean the module (or the kernel) went wrong.
SPLATS = (
    "BUG",
    "WARNING",
    "Oops",
    "KASAN",
    "UBSAN",
    "cut here",
    "leak",
    "general protection",
    "Call Trace",
    "blocked for more than",
    "list_add corruption",
    "list_del corruption",
)

SYS_DELETE_MODULE = 176  # x86_64

# Per race test; three of them keep the races to about 8 s in the VM.  Raise
# DOORBELL_RACE_SECONDS for a soak run.
RACE_SECONDS = float(os.environ.get("DOORBELL_RACE_SECONDS", "2.5"))
# Rounds every race test runs even if the VM is slower than expected.
RACE_MIN_ROUNDS = 5


# --- helpers ---------------------------------------------------------------


class KernelLog:
    """New kernel log lines since construction, from /dev/kmsg or dmesg."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._base: list[str] = []
        try:
            self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError:
            self._fd = None
            self._base = self._dmesg()

    @staticmethod
    def _dmesg() -> list[str]:
        return subprocess.run(["dmesg"], check=True, capture_output=True, text=True).stdout.splitlines()

    def new_lines(self) -> list[str]:
        if self._fd is None:
            return self._dmesg()[len(self._base) :]
        lines = []
        while True:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                return lines
            except BrokenPipeError:
                # Records were overwritten under us; the next read resyncs.
                continue
            text = record.decode(errors="replace")
            lines.append(text.split(";", 1)[-1].split("\n", 1)[0])

    def splats(self) -> list[str]:
        return [ln for ln in self.new_lines() if any(s in ln for s in SPLATS)]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _loaded() -> bool:
    return SYSFS.exists()


def _insmod() -> None:
    res = _run("insmod", KO)
    assert res.returncode == 0, f"insmod {KO}: {res.stderr.strip()}"
    _wait_for(lambda: Path(DEFAULT_PATH).exists(), DEFAULT_PATH)


def _rmmod() -> None:
    res = _run("rmmod", MODULE)
    assert res.returncode == 0, f"rmmod {MODULE}: {res.stderr.strip()}"
    _wait_for(lambda: not Path(DEFAULT_PATH).exists(), f"{DEFAULT_PATH} to go")


def _kmemleak_reports() -> str:
    """Leaks kmemleak pins on this module, if the kernel has kmemleak."""
    ctl = Path("/sys/kernel/debug/kmemleak")
    if not ctl.exists():
        return ""
    ctl.write_text("scan")
    return "\n".join(block for block in ctl.read_text().split("unreferenced object") if MODULE in block)


def _run_threads(targets: list[Callable[[], None]], timeout: float = 60.0) -> None:
    """Run targets concurrently; re-raise the first exception any raised."""
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads hung"
    if errors:
        raise errors[0]


def _rounds(seconds: float = RACE_SECONDS) -> Iterator[int]:
    """Round numbers until the deadline, but at least RACE_MIN_ROUNDS."""
    deadline = time.monotonic() + seconds
    i = 0
    while i < RACE_MIN_ROUNDS or time.monotonic() < deadline:
        yield i
        i += 1


# --- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def doorbell_module() -> Iterator[None]:
    """Load the module for this file; unload it again if we loaded it."""
    if os.geteuid() != 0:
        pytest.skip("loading doorbell.ko needs root")
    log = KernelLog()
    ours = not _loaded()
    if ours:
        _insmod()
    yield
    # Scan while loaded: kmemleak names the module's functions only then.
    leaks = _kmemleak_reports()
    if ours and _loaded():
        _rmmod()
    splats = log.splats()
    log.close()
    assert not leaks, f"kmemleak:\n{leaks}"
    assert not splats, "kernel log after rmmod:\n" + "\n".join(splats)


@pytest.fixture(autouse=True)
def clean_kernel_log(doorbell_module: None) -> Iterator[None]:
    """Fail the test if the kernel logged a splat while it ran."""
    log = KernelLog()
    yield
    splats = log.splats()
    log.close()
    assert not splats, "kernel log:\n" + "\n".join(splats)


# --- counting --------------------------------------------------------------


def test_ring_alone() -> None:
    with Doorbell.open() as db, Doorbell.open() as other:
        for _ in range(500):
            db.ring()
        assert db.count == 500
        assert other.count == 0, "each open file is its own doorbell"


def test_eventfd_alone() -> None:
    with Doorbell.open() as db, EventFd() as efd:
        db.attach(efd.fd)
        expected = 0
        for i in range(500):
            efd.write(i % 5 + 1)
            expected += i % 5 + 1
        assert db.count == expected
        assert efd.drain() == 0, "the kernel must consume the eventfd count"


def test_ring_and_eventfd_together() -> None:
    with Doorbell.open() as db, EventFd() as efd:
        db.attach(efd.fd)
        for _ in range(300):
            db.ring()
            efd.write(2)
        assert db.count == 300 * 3
        assert efd.drain() == 0


def test_signal_pending_before_attach_is_counted() -> None:
    with Doorbell.open() as db, EventFd(initval=2) as efd:
        efd.write(3)
        db.attach(efd.fd)
        assert db.count == 5
        assert efd.drain() == 0
        efd.write(1)
        assert db.count == 6


def test_reset_returns_old_value_and_zeroes() -> None:
    with Doorbell.open() as db, EventFd() as efd:
        db.attach(efd.fd)
        for _ in range(4):
            db.ring()
        efd.write(3)
        assert db.reset() == 7
        assert db.count == 0
        assert db.reset() == 0
        efd.write(2)
        assert db.count == 2, "reset must not detach"


def test_detach_stops_counting() -> None:
    with Doorbell.open() as db, EventFd() as efd:
        db.attach(efd.fd)
        efd.write(2)
        db.detach()
        efd.write(5)
        assert db.count == 2
        assert efd.drain() == 5, "after detach the eventfd keeps its count"
        db.attach(efd.fd)
        efd.write(1)
        assert db.count == 3


def test_one_eventfd_on_two_doorbells_counts_each_signal_once() -> None:
    with Doorbell.open() as a, Doorbell.open() as b, EventFd() as efd:
        a.attach(efd.fd)
        b.attach(efd.fd)
        for _ in range(400):
            efd.write(1)
        assert a.count + b.count == 400
        assert efd.drain() == 0


def test_threads_hammering_eventfd_and_ring_exact_total() -> None:
    writers, per_writer, rings = 4, 1500, 3000
    with Doorbell.open() as db, EventFd() as efd:
        db.attach(efd.fd)
        start = threading.Barrier(writers + 1)

        def writer(seed: int) -> Callable[[], None]:
            def run() -> None:
                start.wait()
                for i in range(per_writer):
                    os.eventfd_write(efd.fd, (seed + i) % 3 + 1)

            return run

        def ringer() -> None:
            start.wait()
            for _ in range(rings):
                db.ring()

        _run_threads([writer(s) for s in range(writers)] + [ringer])
        expected = rings + sum((s + i) % 3 + 1 for s in range(writers) for i in range(per_writer))
        assert db.count == expected
        assert efd.drain() == 0


# --- errors ----------------------------------------------------------------


def test_attach_bad_fd_is_ebadf() -> None:
    with Doorbell.open() as db:
        # After the doorbell's open, or that open could reuse the number.
        stale = os.open("/dev/null", os.O_RDONLY)
        os.close(stale)
        for fd in (-1, stale):
            with pytest.raises(OSError) as info:
                db.attach(fd)
            assert info.value.errno == errno.EBADF, fd


def test_attach_non_eventfd_is_einval() -> None:
    r, w = os.pipe()
    null = os.open("/dev/null", os.O_RDWR)
    try:
        with Doorbell.open() as db:
            for fd in (r, w, null, db.fileno()):
                with pytest.raises(OSError) as info:
                    db.attach(fd)
                assert info.value.errno == errno.EINVAL, fd
            with pytest.raises(OSError) as info:
                db.detach()
            assert info.value.errno == errno.ENOENT
    finally:
        for fd in (r, w, null):
            os.close(fd)


def test_attach_nonzero_flags_is_einval() -> None:
    with Doorbell.open() as db, EventFd() as efd:
        with pytest.raises(OSError) as info:
            db.attach(efd.fd, flags=1)
        assert info.value.errno == errno.EINVAL
        efd.write(1)
        assert db.count == 0


def test_attach_while_attached_is_ebusy() -> None:
    with Doorbell.open() as db, EventFd() as first, EventFd() as second:
        db.attach(first.fd)
        for fd in (second.fd, first.fd):
            with pytest.raises(OSError) as info:
                db.attach(fd)
            assert info.value.errno == errno.EBUSY
        first.write(2)
        second.write(7)
        assert db.count == 2, "the first eventfd must stay the attached one"
        assert second.drain() == 7


def test_detach_while_not_attached_is_enoent() -> None:
    with Doorbell.open() as db, EventFd() as efd:
        with pytest.raises(OSError) as info:
            db.detach()
        assert info.value.errno == errno.ENOENT
        db.attach(efd.fd)
        db.detach()
        with pytest.raises(OSError) as info:
            db.detach()
        assert info.value.errno == errno.ENOENT


def test_unknown_ioctl_is_enotty() -> None:
    size_mask = 0x3FFF << 16
    unknown_nr = DOORBELL_IOCTL_TYPE << 8 | 0x7F
    get_count_u32 = (DOORBELL_GET_COUNT & ~size_mask) | 4 << 16
    tcgets = 0x5401
    with Doorbell.open() as db:
        assert try_ioctl(db.fileno(), unknown_nr) == errno.ENOTTY
        assert try_ioctl(db.fileno(), get_count_u32, (ctypes.c_uint8 * 8)()) == errno.ENOTTY
        assert try_ioctl(db.fileno(), tcgets, (ctypes.c_uint8 * 64)()) == errno.ENOTTY


# --- teardown --------------------------------------------------------------


def test_closing_eventfd_detaches() -> None:
    with Doorbell.open() as db:
        efd = EventFd()
        db.attach(efd.fd)
        efd.write(2)
        efd.close()
        assert db.count == 2
        with pytest.raises(OSError) as info:
            db.detach()
        assert info.value.errno == errno.ENOENT
        with EventFd() as other:
            db.attach(other.fd)
            other.write(3)
            assert db.count == 5


def test_closing_one_of_two_eventfd_fds_keeps_it_attached() -> None:
    with Doorbell.open() as db, EventFd() as efd:
        dup = os.dup(efd.fd)
        db.attach(dup)
        os.close(dup)
        efd.write(4)
        assert db.count == 4
        db.detach()


def test_signal_after_doorbell_closed_is_left_in_eventfd() -> None:
    with EventFd() as efd:
        with Doorbell.open() as db:
            db.attach(efd.fd)
            efd.write(1)
            assert db.count == 1
        efd.write(6)
        assert efd.drain() == 6


def test_attach_detach_race_under_load_is_exact() -> None:
    """Signals racing attach/detach are counted exactly once or left over."""
    with Doorbell.open() as db, EventFd() as efd:
        stop = threading.Event()
        written = [0, 0]
        rounds = [0]

        def writer(slot: int) -> Callable[[], None]:
            def run() -> None:
                while not stop.is_set():
                    os.eventfd_write(efd.fd, 1)
                    written[slot] += 1

            return run

        def toggler() -> None:
            try:
                for n in _rounds():
                    rounds[0] = n
                    db.attach(efd.fd)
                    db.detach()
                db.attach(efd.fd)
            finally:
                stop.set()

        _run_threads([writer(0), writer(1), toggler])
        print(f"{rounds[0] + 1} attach/detach rounds, {sum(written)} signals")
        db.detach()
        assert db.count + efd.drain() == sum(written)


def test_eventfd_close_races_detach_and_ring() -> None:
    """EPOLLHUP from closing the eventfd races DETACH on the same doorbell."""
    with Doorbell.open() as db:
        stop = threading.Event()
        totals = {"rounds": 0, "written": 0, "drained": 0, "rings": 0}

        def attacher() -> None:
            try:
                for n in _rounds():
                    totals["rounds"] = n + 1
                    efd = EventFd()
                    try:
                        # Never EBUSY: the last close() detached synchronously.
                        db.attach(efd.fd)
                        for _ in range(3):
                            efd.write(1)
                        totals["written"] += 3
                        totals["drained"] += efd.drain()
                    finally:
                        efd.close()
            finally:
                stop.set()

        def detacher() -> None:
            while not stop.is_set():
                try:
                    db.detach()
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise

        def ringer() -> None:
            while not stop.is_set():
                db.ring()
                totals["rings"] += 1

        _run_threads([attacher, detacher, ringer])
        print(totals)
        expected = totals["rings"] + totals["written"] - totals["drained"]
        assert db.count == expected


def _close_while_writing(db: Doorbell, efd: EventFd, mode: int) -> None:
    """Mode 0: close the doorbell; 1: also close the eventfd; 2: detach first."""
    started = threading.Event()

    def writer() -> None:
        started.set()
        for _ in range(200):
            efd.write(1)
        if mode == 1:
            efd.close()

    def closer() -> None:
        started.wait()
        if mode == 2:
            db.detach()
        db.close()

    _run_threads([writer, closer])


def test_close_doorbell_while_signals_arrive() -> None:
    """Close the doorbell, the eventfd or both while a writer is busy."""
    for rnd in _rounds():
        db = Doorbell.open()
        efd = EventFd()
        try:
            db.attach(efd.fd)
            _close_while_writing(db, efd, rnd % 3)
            if efd.fd >= 0:
                # Outliving its doorbell, the eventfd keeps what it is sent.
                efd.write(1)
                assert efd.drain() >= 1
        finally:
            db.close()
            efd.close()
    print(f"{rnd + 1} rounds")


def test_rmmod_refused_while_a_doorbell_is_open() -> None:
    with Doorbell.open() as db:
        assert _run("rmmod", MODULE).returncode != 0
        assert _loaded()
        db.ring()
        assert db.count == 1


def _delete_module(flags: int = os.O_NONBLOCK) -> int:
    """delete_module(2) as rmmod calls it; 0 or the errno.

    rmmod itself refuses a module in use before making the call, so only
    the syscall shows what the kernel says.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.syscall(SYS_DELETE_MODULE, MODULE.encode(), ctypes.c_uint(flags))
    return ctypes.get_errno() if ret else 0


def test_rmmod_refused_while_signals_arrive_then_succeeds() -> None:
    """Unload races open doorbells that are being signalled from other threads.

    While any doorbell file is open the module is pinned: delete_module(2)
    fails with EWOULDBLOCK (== EAGAIN; 6.12's try_stop_module() returns that
    for a module in use, not EBUSY) and the counters keep counting.  Once the
    last doorbell is closed, with writers still signalling the eventfds,
    unloading succeeds, and the eventfds, which outlive it, keep their counts
    without calling into the unloaded module.
    """
    efds = [EventFd(), EventFd()]
    bells = [Doorbell.open(), Doorbell.open()]
    stop = threading.Event()
    written = [0, 0]
    refusals = 0
    try:
        for db, efd in zip(bells, efds, strict=True):
            db.attach(efd.fd)

        def writer(i: int) -> Callable[[], None]:
            def run() -> None:
                while not stop.is_set():
                    os.eventfd_write(efds[i].fd, 1)
                    written[i] += 1

            return run

        def unloader() -> None:
            nonlocal refusals
            try:
                for rnd in _rounds():
                    err = _delete_module()
                    assert err == errno.EWOULDBLOCK, f"delete_module with doorbells open: {os.strerror(err)}"
                    assert _loaded()
                    refusals += 1
                    if rnd == 1:
                        # One doorbell gone, the other still open: still pinned.
                        bells[0].close()
                # Close the last doorbell while its eventfd is being written.
                before = bells[1].count
                bells[1].close()
                assert before > 0
                _wait_for(lambda: _delete_module() == 0, "delete_module to succeed", timeout=30)
                assert not _loaded()
                time.sleep(0.05)  # the writers keep going on the unloaded module's ex-eventfds
            finally:
                stop.set()

        _run_threads([writer(0), writer(1), unloader])
    finally:
        stop.set()
        for db in bells:
            db.close()
        for efd in efds:
            efd.close()
        if not _loaded():
            _insmod()
    assert refusals >= RACE_MIN_ROUNDS
    assert all(written), written


def test_insmod_rmmod_cycles() -> None:
    """Unload with eventfds that outlived or hung up on their doorbells."""
    for _ in range(3):
        with EventFd() as survivor:
            with Doorbell.open() as db:
                db.attach(survivor.fd)
                survivor.write(1)
                assert db.count == 1
            with Doorbell.open() as db, EventFd() as gone:
                db.attach(gone.fd)
                gone.close()
                db.ring()
            _rmmod()
            assert not _loaded()
            # Must not reach into the unloaded module's wait entry.
            survivor.write(2)
            assert survivor.drain() == 2
        _insmod()
        with Doorbell.open() as db:
            db.ring()
            assert db.count == 1
