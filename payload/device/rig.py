"""One L2 VM per variant, built once and run once per round.

Every variant's VM is set up the same way (the queue programs' RAM slot,
the in-kernel irqchip as in the benchmark's rigs, one vCPU, one blocking
eventfd for the device, the same native loop); they differ only in the
guest program (the shadow store in (b)), the registration, and where the
device thread loads tails from:

* (a) a 256-byte register array of the VMM's (:class:`RegisterBuffer`),
  which the loop's MMIO handler stores into before it kicks the eventfd;
* (b) the shadow array in guest RAM, behind 64 KVM_IOEVENTFDs on one
  eventfd;
* (c) the KVM_IOFD's buffer (:class:`RegisterBuffer`), which KVM stores into.

Why one eventfd for (b)'s 64 ioeventfds rather than one per queue, as
QEMU's NVMe (one EventNotifier per SQ): the device thread then does the
same thing in (b) and (c) (one blocking read, then a scan of 64 tails), so
the comparison is of the doorbell paths alone.  Per-queue eventfds would
make (b)'s device poll(2) 64 fds and read each ready one, userspace work
that only (b) would pay; in the kernel both cost one eventfd_signal per
write either way.
"""

from __future__ import annotations

import os
import select
from collections.abc import Sequence
from typing import Any

from payload.device import checks, model
from payload.device.thread import DeviceThread
from payload.guest import queues
from payload.kvm.buffer import RegisterBuffer
from payload.kvm.libc import errno_name
from payload.kvm.vmm import Vm
from payload.native.bank import BankRun, run_bank

RUN_TIMEOUT_S = 60.0
"""Per-run limit: ~0.1 ms per write under TCG, so 4000 writes take < 1 s."""


def guest_ram_address(vm: Vm) -> int:
    """The user address of guest physical 0, where the shadow array's tails
    are read in place."""
    return vm.ram_address


class BankRig:
    """The VM, vCPU, eventfd and register memory of one variant."""

    def __init__(self, variant: model.Variant, pattern: Sequence[tuple[int, int]]) -> None:
        self.variant = variant
        self.pattern = list(pattern)
        self.vm = Vm(mem_size=queues.QUEUE_RAM_SIZE)
        self.efd = -1
        self.regs: RegisterBuffer | None = None
        try:
            self.vm.create_irqchip()
            self.efd = os.eventfd(0, os.EFD_CLOEXEC)  # blocking: the device thread sleeps in read
            if not variant.shadow:
                self.regs = RegisterBuffer(queues.BANK_LEN)
            self._register()
            program = queues.doorbell_program(self.pattern, shadow_first=variant.shadow)
            self.entry = self.vm.load(program)
            self.vcpu = self.vm.create_vcpu(self.entry)
            self.tails_addr = (self.regs.address if self.regs is not None
                               else guest_ram_address(self.vm) + queues.SHADOW_BASE)
        except BaseException:
            self.close()
            raise

    def _register(self) -> None:
        if self.variant.ioctl == "KVM_IOEVENTFD":
            for q in range(queues.QUEUES):
                self.vm.ioeventfd(queues.doorbell(q), queues.DOORBELL_STRIDE, self.efd)
        elif self.variant.ioctl == "KVM_IOFD":
            assert self.regs is not None
            self.vm.assign_iofd(queues.DOORBELL_BASE, queues.BANK_LEN, self.efd, buffer=self.regs.address)

    def _reset(self) -> int:
        """Zero every tail and the vCPU; returns signals left on the eventfd
        (must be 0: the last run's device thread read them all)."""
        if self.regs is not None:
            for q in range(queues.QUEUES):
                self.regs.store(q * queues.DOORBELL_STRIDE, 0, 4)
        else:
            self.vm.write(queues.SHADOW_BASE, bytes(queues.BANK_LEN))
        self.vcpu.reset(self.entry)
        left = 0
        while select.select([self.efd], [], [], 0)[0]:
            left += os.eventfd_read(self.efd)
        return left

    def run(self, round_index: int) -> dict[str, Any]:
        """One run: reset, start the device, run the guest to DONE, stop and
        drain the device, check.  Returns the run's entry for the output."""
        left = self._reset()
        device = DeviceThread(self.efd, self.tails_addr)
        device.start()
        try:
            r = run_bank(self.vcpu, queues.DOORBELL_BASE, queues.BANK_LEN,
                         self.regs.address if self.regs is not None else None,
                         self.efd, timeout_s=RUN_TIMEOUT_S)
        finally:
            record = device.stop()
        problems = self._problems(r, record, left)
        writes = len(self.pattern)
        return {
            "round": round_index,
            "ns": r.ns,
            "ns_per_write": r.ns / writes if writes else 0.0,
            "userspace_exits": r.exits,
            "doorbell_exits": r.doorbell_writes,
            "stray_exits": r.stray_exits,
            "kicks": r.kicks,
            "kvm_runs": r.kvm_runs,
            "interrupted": r.interrupted,
            "end": r.end,
            "done_value": r.done_value,
            "wakeups": record.wakeups,
            "device_cpu_ns": record.cpu_ns,
            "ns_per_write_less_device": (r.ns - record.cpu_ns) / writes if writes else 0.0,
            "signals": record.signals,
            "queue_moves": record.consumer.moves,
            "entries_consumed": record.consumer.entries,
            # Before the drain: the drain would find a tail whose signal was lost.
            "tails_ok": record.consumed_by_signals == model.last_tails(self.pattern),
            "problems": problems,
        }

    def _problems(self, r: BankRun, record: model.DeviceRecord, left: int) -> list[str]:
        problems = [] if not left else [f"{left} signals were left on the eventfd before the run"]
        problems += checks.vmm_problems(
            self.variant, len(self.pattern), end=r.end, done_value=r.done_value, exits=r.exits,
            doorbell_exits=r.doorbell_writes, stray_exits=r.stray_exits, kicks=r.kicks)
        problems += checks.device_problems(record, self.pattern)
        return problems

    # -- the path proof ------------------------------------------------------------------
    def _deassign(self, ioctl: str, queue_range: Sequence[int]) -> list[OSError | None]:
        """Deassign through ``ioctl``: the whole array for KVM_IOFD, one
        doorbell per queue in ``queue_range`` for KVM_IOEVENTFD."""
        results: list[OSError | None] = []
        calls = ([lambda: self.vm.deassign_iofd(queues.DOORBELL_BASE, queues.BANK_LEN, self.efd)]
                 if ioctl == "KVM_IOFD" else
                 [lambda q=q: self.vm.ioeventfd(queues.doorbell(q), queues.DOORBELL_STRIDE,
                                                self.efd, deassign=True) for q in queue_range])
        for call in calls:
            try:
                call()
                results.append(None)
            except OSError as e:
                results.append(e)
        return results

    def prove_registrations(self) -> dict[str, Any]:
        """After the rounds: count what each ioctl finds and removes.

        The other ioctl (or, for (a), both) must find nothing (ENOENT); the
        variant's own must remove exactly :attr:`Variant.registrations`:
        64 ioeventfds, or one iofd (a second deassign then finds nothing).
        Without this, registering (b) with KVM_IOFD or (c) with 64
        ioeventfds would pass every count check.
        """
        everything = range(queues.QUEUES)
        found: dict[str, int] = {}
        errors: dict[str, list[str]] = {}
        own = self.variant.ioctl
        order = [i for i in ("KVM_IOFD", "KVM_IOEVENTFD") if i != own] + ([own] if own else [])
        for ioctl in order:
            results = self._deassign(ioctl, everything)
            if ioctl == "KVM_IOFD" and ioctl == own:
                results += self._deassign(ioctl, everything)  # a second iofd would show here
            found[ioctl] = sum(e is None for e in results)
            errors[ioctl] = sorted({errno_name(e.errno) for e in results if e is not None})
        return {"ioctl": own, "removed": found, "errors": errors,
                "registrations": found.get(own, 0) if own else sum(found.values())}

    def close(self) -> None:
        """The VM (and with it any registration) first, then the eventfd and
        the buffer: a live iofd may point at the buffer until the VM is gone."""
        self.vm.close()
        if self.efd >= 0:
            os.close(self.efd)
            self.efd = -1
        if self.regs is not None:
            self.regs.close()
            self.regs = None

    def __enter__(self) -> BankRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

