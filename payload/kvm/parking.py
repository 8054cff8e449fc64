"""Stopping a vCPU at an exact point inside KVM, and acting while it is stopped.

Why: the claims that matter under concurrency ("the value is stored before
the eventfd is signalled", "a deassign returns only once no vCPU is still
storing") are about what another thread can observe *between* two steps
of one KVM_RUN.  A race test that hopes to land there proves nothing on a
one-vCPU, non-preemptible VM, where the vCPU thread is never interrupted
between the steps.  Here the vCPU is parked deterministically instead:
the iofd's buffer is a :class:`~payload.kvm.uffd.MissingPage`, so KVM's
load or store blocks in the page fault, with kvm->srcu held, until
:class:`Parked` has run the test's check and filled the page.

:class:`BlockedCall` runs an ioctl (a deassign) in a thread of its own
and tells, from the thread's ``wchan``, when it is waiting in the kernel
(for an SRCU grace period) rather than done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from payload.kvm.uffd import MissingPage, UffdMsg


class Parked:
    """In a thread: wait for the first access to ``page`` to fault, run
    ``at_fault`` with the fault message while the access is parked, then
    fill the page with ``contents``, which lets the access complete.

    The page is filled whatever happens, so a failed check never leaves a
    vCPU blocked in the kernel; :meth:`join` re-raises what failed."""

    def __init__(self, page: MissingPage, at_fault: Callable[[UffdMsg], None], contents: bytes,
                 timeout_s: float) -> None:
        self.page, self.at_fault, self.contents, self.timeout_s = page, at_fault, contents, timeout_s
        self.faults = 0
        self.msg: UffdMsg | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uffd", daemon=True)

    def start(self) -> Parked:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.msg = self.page.wait_fault(self.timeout_s)
            self.faults += 1
            if self.msg.address & ~(self.page.size - 1) != self.page.address:
                raise AssertionError(f"the fault was at {self.msg.address:#x}, "
                                     f"not on the page at {self.page.address:#x}")
            self.at_fault(self.msg)
        except BaseException as exc:  # re-raised by join()
            self.error = exc
        finally:
            self.page.resolve(self.contents)

    def join(self) -> None:
        self._thread.join(self.timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the fault handler still runs after {self.timeout_s} s")
        if self.error is not None:
            raise self.error


def wchan(tid: int) -> str:
    """Where in the kernel thread ``tid`` of this process sleeps ("0": running)."""
    with open(f"/proc/self/task/{tid}/wchan") as f:
        return f.read().strip()


class BlockedCall:
    """``call()`` in a thread of its own, with a view of where it sleeps."""

    def __init__(self, call: Callable[[], None], name: str) -> None:
        self.call = call
        self.returned = threading.Event()
        self.error: BaseException | None = None
        self.wchan = ""
        self._tid = 0
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        self._tid = threading.get_native_id()
        self._started.set()
        try:
            self.call()
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.returned.set()

    def start(self, timeout_s: float) -> BlockedCall:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"{self._thread.name} did not start in {timeout_s} s")
        return self

    def wait_sleeping_in(self, word: str, timeout_s: float) -> None:
        """Return once the thread sleeps in a kernel function whose name
        contains ``word``; AssertionError if it returns first or never does."""
        deadline = time.monotonic() + timeout_s
        while word not in self.wchan:
            if self.returned.is_set():
                raise AssertionError(f"{self._thread.name} returned without waiting in {word} "
                                     f"(last wchan {self.wchan!r})")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self._thread.name} never waited in {word} within "
                                     f"{timeout_s} s (wchan {self.wchan!r})")
            time.sleep(0.01)
            try:
                self.wchan = wchan(self._tid)
            except FileNotFoundError:  # the thread is gone: it returned
                self.wchan = "(exited)"

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"{self._thread.name} still blocked after {timeout_s} s")
        if self.error is not None:
            raise self.error
