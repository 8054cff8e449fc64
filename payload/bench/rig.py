"""One L2 VM per mode, built once and reused by every trial of that mode.

Runs inside the test VM (it needs /dev/kvm and /dev/doorbell).  Every VM is
configured the same way whatever its mode, in-kernel irqchip included, so
the modes differ only in what handles the guest's write: the irqchip is
what makes ``kernel-pio`` stay in the kernel, and giving it to everyone
keeps KVM_RUN's entry/exit work identical across rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from payload.bench.modes import ACCESS_SIZE, IOFD_RANGE_LEN, Mode
from payload.doorbell import DOORBELL_RING, Doorbell
from payload.guest import programs
from payload.guest.programs import MMIO_ADDR, PIO_PORT, Program
from payload.kvm.vmm import Vcpu, Vm
from payload.native import run_native


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


def program(mode: Mode, n: int) -> Program:
    """The guest loop for ``mode``: ``n`` writes (or CPUIDs), then DONE_PORT."""
    if mode.path == "cpuid":
        return programs.cpuid_loop(n)
    if mode.path == "kernel":
        return programs.elcr_write_loop(n)
    if mode.bus == "pio":
        return programs.pio_write_loop(n, ACCESS_SIZE, PIO_PORT)
    return programs.mmio_write_loop(n, ACCESS_SIZE, MMIO_ADDR)


def timeout_for(n: int) -> float:
    """Generous per-run limit: a write costs ~30-60 us under TCG, 1 ms is a hang."""
    return max(30.0, n * 1e-3)


class Rig:
    """The VM, vCPU, doorbell and (for eventfd modes) eventfd of one mode."""

    def __init__(self, mode: Mode, n: int) -> None:
        self.mode = mode
        self.n = n
        self.vm = Vm()
        self.doorbell: Doorbell | None = None
        self.efd = -1
        try:
            self.vm.create_irqchip()
            self.doorbell = Doorbell.open()
            if mode.path in ("iofd", "ioeventfd"):
                self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                self.doorbell.attach(self.efd)
                self._register()
            self.entry = self.vm.load(program(mode, n))
            self.vcpu: Vcpu = self.vm.create_vcpu(self.entry)
        except BaseException:
            self.close()
            raise

    def _register(self) -> None:
        """Claim the guest's write address for the eventfd, the mode's way."""
        pio = self.mode.bus == "pio"
        addr = PIO_PORT if pio else MMIO_ADDR
        if self.mode.path == "iofd":
            self.vm.iofd(addr, IOFD_RANGE_LEN, self.efd, pio=pio)
        else:  # upstream wildcard: any value, exact address and length
            self.vm.ioeventfd(addr, ACCESS_SIZE, self.efd, pio=pio)

    def run(self, trial: int) -> Trial:
        """One trial: reset counters and vCPU, run the loop natively, count."""
        assert self.doorbell is not None
        self.doorbell.reset()
        self.vcpu.reset(self.entry)
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
            eventfd_left=self._drain(),
            end=r.end,
        )

    def _drain(self) -> int:
        if self.efd < 0:
            return 0
        try:
            return os.eventfd_read(self.efd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Doorbell first (it detaches the eventfd), then eventfd and VM."""
        if self.doorbell is not None:
            self.doorbell.close()
            self.doorbell = None
        if self.efd >= 0:
            os.close(self.efd)
            self.efd = -1
        self.vm.close()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
