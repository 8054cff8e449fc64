"""An NVMe-style array of 1024 doorbells, registered both ways (runs in the VM).

An NVMe controller's doorbells are 4-byte registers side by side in one
page of its BAR (CAP.DSTRD = 0), one per queue.  With KVM_IOEVENTFD a VMM
that wants them in the kernel registers one ioeventfd per doorbell, each
with its own eventfd so it knows which queue rang (QEMU does so per
virtqueue); with KVM_IOFD it registers the page once.

This measures what that costs: whether KVM accepts the 1024 ioeventfds (and
with which errno it refuses, if it does: the issue expected ENOSPC from the
bus's 1000-device limit, which kvm_io_bus_register_dev() does not apply to
ioeventfds), how long the 1024 registrations take against the one KVM_IOFD
registration over the same 4 KiB, and how long taking each down takes.
Nothing here runs the guest: the cost is the VMM's setup, not a doorbell's.
"""

from __future__ import annotations

import os
import resource
import time
from contextlib import ExitStack
from typing import Any

from payload.kvm.libc import errno_name
from payload.kvm.vmm import Vm

DOORBELLS = 1024
DOORBELL_BYTES = 4
"""NVMe's doorbell stride with CAP.DSTRD = 0."""
ARRAY_ADDR = 0xD000
"""A page of the L2 guest's unbacked MMIO window, as a BAR's doorbell page would be."""
REPEATS = 3
"""Fresh VMs per measurement: registration times are single numbers, so the
report shows the median of a few."""
SPARE_FDS = 64
"""Descriptors the process needs besides the array's eventfds."""


def _fd_room(needed: int) -> bool:
    """Raise RLIMIT_NOFILE's soft limit (and the hard one, as root) to
    ``needed`` if it is lower; False if the process cannot have that many."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return True
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
    except (ValueError, OSError):
        return False
    return True


def _register(vm: Vm, count: int, fds: list[int]) -> tuple[int, str | None, int]:
    """Register ``count`` ioeventfds until one is refused: (accepted, errno
    name of the refusal or None, ns for all the calls)."""
    accepted, refused = 0, None
    t0 = time.perf_counter_ns()
    for i in range(count):
        try:
            vm.ioeventfd(ARRAY_ADDR + DOORBELL_BYTES * i, DOORBELL_BYTES, fds[i % len(fds)])
        except OSError as e:
            refused = errno_name(e.errno)
            break
        accepted += 1
    return accepted, refused, time.perf_counter_ns() - t0


def _deassign(vm: Vm, count: int, fds: list[int]) -> int:
    t0 = time.perf_counter_ns()
    for i in range(count):
        vm.ioeventfd(ARRAY_ADDR + DOORBELL_BYTES * i, DOORBELL_BYTES, fds[i % len(fds)],
                     deassign=True)
    return time.perf_counter_ns() - t0


def _iofd(vm: Vm, fd: int) -> dict[str, Any]:
    """One KVM_IOFD over the whole array, then its deassign, timed."""
    length = DOORBELLS * DOORBELL_BYTES
    t0 = time.perf_counter_ns()
    try:
        vm.assign_iofd(ARRAY_ADDR, length, fd)
    except OSError as e:
        return {"accepted": 0, "refused": errno_name(e.errno),
                "register_ns": time.perf_counter_ns() - t0, "deassign_ns": None}
    register_ns = time.perf_counter_ns() - t0
    t0 = time.perf_counter_ns()
    vm.deassign_iofd(ARRAY_ADDR, length, fd)
    return {"accepted": 1, "refused": None, "register_ns": register_ns,
            "deassign_ns": time.perf_counter_ns() - t0}


def measure_once(own_eventfds: bool) -> dict[str, Any]:
    """Both registrations in one fresh VM (in-kernel irqchip, as the rigs):
    the 1024 ioeventfds, then, once they are gone, the one KVM_IOFD."""
    with Vm() as vm, ExitStack() as stack:
        vm.create_irqchip()

        def eventfd() -> int:
            fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            stack.callback(os.close, fd)
            return fd

        fds = [eventfd() for _ in range(DOORBELLS if own_eventfds else 1)]
        accepted, refused, register_ns = _register(vm, DOORBELLS, fds)
        deassign_ns = _deassign(vm, accepted, fds)
        ioeventfd = {"accepted": accepted, "refused": refused, "register_ns": register_ns,
                     "deassign_ns": deassign_ns}
        return {"ioeventfd": ioeventfd, "iofd": _iofd(vm, eventfd())}


def measure(repeats: int = REPEATS) -> dict[str, Any]:
    """The raw record of the array (``raw["array"]``): layout, then each
    repeat's outcome and times.  ``eventfds`` says whether each doorbell
    had its own (1024) or, when the process could not have that many
    descriptors, all shared one (1)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    own = _fd_room(DOORBELLS + SPARE_FDS)
    return {
        "doorbells": DOORBELLS, "doorbell_bytes": DOORBELL_BYTES, "addr": ARRAY_ADDR, "bus": "mmio",
        "eventfds": DOORBELLS if own else 1,
        "nofile_soft": {"before": nofile, "after": resource.getrlimit(resource.RLIMIT_NOFILE)[0]},
        "repeats": [measure_once(own) for _ in range(repeats)],
    }
