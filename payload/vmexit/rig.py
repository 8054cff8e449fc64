"""One L2 VM per mode, built once and reused by every trial of that mode.

Runs inside the test VM (it needs /dev/kvm and /dev/doorbell).  Every VM is
configured the same way whatever its mode, in-kernel irqchip included, so
the modes differ only in what handles the guest's write: the irqchip is
what makes ``kernel-pio`` stay in the kernel, and giving it to everyone
keeps KVM_RUN's entry/exit work identical across rows.

Every write mode runs the same guest program (N - 1 writes of
:data:`~payload.vmexit.modes.WRITE_VALUE`, then one of
:data:`~payload.vmexit.modes.LAST_WRITE`), so a buffer mode and its plain
twin differ in nothing but the registration, and a scale row and its
plain mode in nothing but the other registrations on the bus.

The hypercall modes run :mod:`payload.guest.hypercall`'s loops with the
vendor's instruction.  ``hc`` offers the vCPU Hyper-V
(:meth:`~payload.kvm.vmm.Vcpu.enable_hyperv`) before its first KVM_RUN, on
the very vCPU the native loop then runs; ``hc-floor`` must not, so that its
hypercall reaches KVM's own handler and is refused there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from payload import cpu
from payload.doorbell import DOORBELL_RING, Doorbell
from payload.guest import hypercall, programs
from payload.guest.memmap import STATUS_ADDR
from payload.guest.programs import ELCR_PORT, Program
from payload.kvm import uapi
from payload.kvm.buffer import RegisterBuffer
from payload.kvm.call import IoctlArg
from payload.kvm.libc import errno_name
from payload.kvm.vmm import Vcpu, Vm
from payload.native import run_native
from payload.vmexit.modes import (
    ACCESS_SIZE,
    BUFFER_RESET,
    HC_CONN_ID,
    IOFD_RANGE_LEN,
    LAST_WRITE,
    STATUS_RESET,
    WRITE_VALUE,
    Mode,
    hot_address,
    neighbour_addresses,
)

CR0_PE = 1 << 0
NEIGHBOUR_LEN = 1
"""Bytes (ports) each of a scale row's other registrations covers."""


@dataclass(frozen=True)
class Trial:
    """What one trial measured and counted; the runner checks it."""

    mode: str
    trial: int
    ns: int
    kvm_runs: int
    exits: int
    interrupted: int
    io_exits: int
    mmio_exits: int
    rings: int
    doorbell: int
    eventfd_left: int
    """Signals the doorbell did not consume (must be 0: it reads them in the wake)."""
    end: str
    done_value: int
    """EAX at DONE: the guest's own iteration count (see :meth:`modes.Mode.guest_count`)."""
    buffer: str | None
    """The buffer's bytes after the trial, in hex; None for a mode without one."""
    status: int | None
    """The last hypercall's status the guest stored (u32); None for a mode
    that makes no hypercall."""


def program(mode: Mode, n: int, vendor: str | None = None) -> Program:
    """The guest loop for ``mode``: ``n`` writes (or CPUIDs, or hypercalls
    with ``vendor``'s instruction, this CPU's by default), then DONE_PORT."""
    if mode.path == "cpuid":
        return programs.bench_cpuid_loop(n)
    if mode.path == "kernel":  # ELCR bits set level triggering: write zeros only
        return programs.bench_write_loop(n, "pio", ELCR_PORT, value=0, size=ACCESS_SIZE)
    if mode.path == "hyperv":
        return hypercall.hv_signal_event_loop(n, HC_CONN_ID, vendor or cpu.vendor())
    if mode.path == "hypercall":
        return hypercall.unknown_hypercall_loop(n, vendor or cpu.vendor())
    addr = hot_address(mode)
    assert mode.bus is not None
    return programs.bench_write_loop(n, mode.bus, addr, value=WRITE_VALUE, last=LAST_WRITE,
                                     size=ACCESS_SIZE)


def timeout_for(n: int) -> float:
    """Generous per-run limit: a write costs ~30-60 us under TCG, 1 ms is a hang."""
    return max(30.0, n * 1e-3)


class Rig:
    """The VM, vCPU, doorbell and (for eventfd modes) eventfd of one mode;
    for a scale row also its other registrations and their one eventfd."""

    def __init__(self, mode: Mode, n: int) -> None:
        self.mode = mode
        self.n = n
        self.vm = Vm()
        self.doorbell: Doorbell | None = None
        self.buffer: RegisterBuffer | None = None
        self.efd = -1
        self.neighbour_fd = -1
        self.neighbours: list[int] = []
        try:
            self.vm.create_irqchip()
            self.doorbell = Doorbell.open()
            if mode.buffered:
                self.buffer = RegisterBuffer(IOFD_RANGE_LEN)
            if mode.others:
                self._register_neighbours()
            if mode.registration:
                self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                self.doorbell.attach(self.efd)
                self._register()
            self.entry = self.vm.load(program(mode, n))
            self.vcpu: Vcpu = self.vm.create_vcpu(self.entry)
            if mode.path == "hyperv":  # before the first KVM_RUN, on the vCPU that runs
                self.vcpu.enable_hyperv()
        except BaseException:
            self.close()
            raise

    @property
    def _addr(self) -> tuple[int, bool]:
        return hot_address(self.mode), self.mode.bus == "pio"

    def _register_neighbours(self) -> None:
        """The scale row's other registrations, of the mode's own kind, all
        on one eventfd nothing attaches to (a signal there would mean a
        neighbour claimed the guest's write)."""
        assert self.mode.bus is not None
        addr, pio = self._addr
        self.neighbour_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        for a in neighbour_addresses(self.mode.bus, addr, self.mode.others):
            self._neighbour(a, pio)
            self.neighbours.append(a)

    def _neighbour(self, addr: int, pio: bool, deassign: bool = False) -> None:
        if self.mode.registration == "KVM_IOFD":
            iofd = self.vm.deassign_iofd if deassign else self.vm.assign_iofd
            iofd(addr, NEIGHBOUR_LEN, self.neighbour_fd, pio=pio)
        else:
            self.vm.ioeventfd(addr, NEIGHBOUR_LEN, self.neighbour_fd, pio=pio, deassign=deassign)

    def _buffer_address(self) -> int | None:
        return None if self.buffer is None else self.buffer.address

    def _register(self) -> None:
        """Claim the guest's write address for the eventfd, the mode's way."""
        if self.mode.registration == "KVM_HYPERV_EVENTFD":
            self.vm.hyperv_eventfd(HC_CONN_ID, self.efd)
            return
        addr, pio = self._addr
        if self.mode.registration == "KVM_IOFD":
            self.vm.assign_iofd(addr, IOFD_RANGE_LEN, self.efd, pio=pio, buffer=self._buffer_address())
        else:  # upstream wildcard: any value, exact address (and length, unless 0)
            self.vm.ioeventfd(addr, self.mode.ioeventfd_len, self.efd, pio=pio)

    def _deassign_request(self, kind: str) -> tuple[int, IoctlArg]:
        """``kind``'s deassign of the registration's own parameters.

        KVM_IOFD cannot name a zero length (EINVAL before any lookup), so for
        the len=0 ioeventfd it asks for the guest's access size instead: the
        lookup then fails or succeeds on the kind alone.
        """
        addr, pio = self._addr
        if kind == "KVM_HYPERV_EVENTFD":
            return uapi.KVM_HYPERV_EVENTFD, uapi.hyperv_eventfd_args(HC_CONN_ID, self.efd, deassign=True)
        if kind == "KVM_IOFD":
            length = IOFD_RANGE_LEN if self.mode.registration == "KVM_IOFD" else (
                self.mode.ioeventfd_len or ACCESS_SIZE)
            return uapi.KVM_IOFD, uapi.iofd_args(addr, length, self.efd, pio=pio, deassign=True,
                                                 buffer=self._buffer_address())
        length = self.mode.ioeventfd_len if self.mode.registration == "KVM_IOEVENTFD" \
            else IOFD_RANGE_LEN
        return uapi.KVM_IOEVENTFD, uapi.ioeventfd_args(addr, length, self.efd, pio=pio, deassign=True)

    def _deassign_as(self, kind: str) -> int:
        """Deassign through ``kind``'s ioctl: the errno, 0 if it found the
        registration (and removed it)."""
        return self.vm.try_ioctl(*self._deassign_request(kind))

    def prove_path(self) -> dict[str, Any] | None:
        """After the trials: deassign with the other ioctl (must fail with
        ENOENT: it never saw this registration), then with the mode's own
        (must succeed).  None for a mode with no registration; a Hyper-V
        connection has no other ioctl that could name it, so ``hc`` proves
        only its own deassign.  A scale row then reports whether its
        neighbours were signalled and deassigns each of them.

        Without this, swapping KVM_IOFD and KVM_IOEVENTFD in :meth:`_register`
        would pass every count check: both keep the write in the kernel and
        signal the same eventfd.
        """
        own, other = self.mode.registration, self.mode.other_registration
        if own is None:
            return None
        proof: dict[str, Any] = {"registered_with": own}
        if other is not None:
            proof.update(other=other, other_deassign=errno_name(self._deassign_as(other)))
        proof["own_deassign"] = errno_name(self._deassign_as(own))
        if self.mode.others:
            proof.update(others_signalled=self._drain(self.neighbour_fd),
                         others_deassigned=self._deassign_neighbours())
        return proof

    def _deassign_neighbours(self) -> int:
        """How many of the neighbours deassign with the mode's own ioctl."""
        _, pio = self._addr
        done = 0
        for a in self.neighbours:
            try:
                self._neighbour(a, pio, deassign=True)
            except OSError:
                continue
            done += 1
        self.neighbours = []
        return done

    def run(self, trial: int) -> Trial:
        """One trial: reset counters, buffer and vCPU, run the loop natively, count."""
        assert self.doorbell is not None
        self.doorbell.reset()
        if self.buffer is not None:
            for off in range(IOFD_RANGE_LEN):
                self.buffer.store(off, BUFFER_RESET, 1)
        self.vcpu.reset(self.entry)
        if self.mode.hypercall:
            self._back_to_real_mode()
            self.vm.write(STATUS_ADDR, STATUS_RESET.to_bytes(4, "little"))
        ring_fd = self.doorbell.fileno() if self.mode.exits_to_userspace else -1
        r = run_native(self.vcpu, ring_fd=ring_fd, ring_cmd=DOORBELL_RING,
                       timeout_s=timeout_for(self.n))
        return Trial(
            mode=self.mode.name,
            trial=trial,
            ns=r.ns,
            kvm_runs=r.kvm_runs,
            exits=r.exits,
            interrupted=r.interrupted,
            io_exits=r.io_exits,
            mmio_exits=r.mmio_exits,
            rings=r.rings,
            doorbell=self.doorbell.count,
            eventfd_left=self._drain(self.efd),
            end=r.end,
            done_value=r.done_value,
            buffer=None if self.buffer is None else self.buffer.bytes().hex(),
            status=int.from_bytes(self.vm.read(STATUS_ADDR, 4), "little")
            if self.mode.hypercall else None,
        )

    def _back_to_real_mode(self) -> None:
        """Clear CR0.PE, which the previous trial's protected-mode entry set
        and :meth:`Vcpu.reset` leaves alone: every trial starts in real mode
        as the first did."""
        sregs = self.vcpu.get_sregs()
        sregs.cr0 &= ~CR0_PE
        self.vcpu.set_sregs(sregs)

    @staticmethod
    def _drain(fd: int) -> int:
        """Signals waiting in eventfd ``fd`` (0 for none or no eventfd)."""
        if fd < 0:
            return 0
        try:
            return os.eventfd_read(fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Doorbell first (it detaches the eventfd), then eventfd, VM, and the
        buffer last: a live iofd may still point at it until the VM is gone."""
        if self.doorbell is not None:
            self.doorbell.close()
            self.doorbell = None
        for attr in ("efd", "neighbour_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        self.vm.close()
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
