"""A minimal VMM in the shape of the kernel's KVM selftests (kvm_util).

One VM, one memory slot at GPA 0, vCPUs in 16-bit real mode with CS = DS = 0
and RIP at the program.  That is all the L2 guest programs need, and keeping
it that small keeps the number of KVM_RUN returns per program exact and easy
to reason about: the tests assert those counts.

Errors: failing syscalls raise :class:`OSError` with the kernel's errno
and the ioctl's name (the checked form of :mod:`payload.kvm.call`; every
VM and vCPU also has its raw forms, ``try_ioctl`` and ``raw_ioctl``, for
calls the kernel must refuse); a guest that misbehaves raises
:class:`GuestError` naming the exit reason and the guest RIP; one that runs
past its time limit raises :class:`GuestTimeout`.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from payload.guest.memmap import DONE_PORT, LOAD_ADDR, RAM_SIZE
from payload.kvm import uapi
from payload.kvm.call import IoctlFd, ioctl
from payload.kvm.libc import last_error, mapped
from payload.kvm.libc import libc as _libc

HV_LINUX_GUEST_OS_ID = 0x8100 << 48
"""A guest OS id as Linux guests report it (vendor 0x8100): any nonzero value
enables Hyper-V hypercalls."""

TSS_ADDR = 0xFFFBD000
"""Where KVM may put the real-mode TSS (QEMU's choice).  Intel CPUs without
"unrestricted guest" need it to run real-mode code; elsewhere it is unused."""

WATCHDOG_PERIOD_S = 0.01
"""After the deadline, re-send SIGALRM this often until KVM_RUN notices."""

# Control register bits an OS sets before it uses SSE (Intel SDM vol. 3A, SSE initialisation).
CR0_MP = 1 << 1  # monitor coprocessor: WAIT/FWAIT honour TS
CR0_EM = 1 << 2  # x87 emulation: when set, SSE instructions raise #UD
CR0_TS = 1 << 3  # task switched: when set, SSE instructions raise #NM
CR4_OSFXSR = 1 << 9  # OS supports FXSAVE/FXRSTOR: when clear, SSE instructions raise #UD


class Loadable(Protocol):
    """Machine code and where it expects to run (a guest program)."""

    code: bytes
    origin: int


class GuestError(RuntimeError):
    """The guest stopped in a way the program did not intend."""

    def __init__(self, reason: int, rip: int | None, detail: str = "") -> None:
        self.reason = reason
        self.reason_name = uapi.exit_reason_name(reason)
        self.rip = rip
        where = "unknown RIP" if rip is None else f"RIP {rip:#x}"
        super().__init__(
            f"guest stopped with {self.reason_name} at {where}" + (f": {detail}" if detail else "")
        )


class GuestTimeout(GuestError):
    """The guest did not reach its end (HLT or DONE_PORT) in time."""

    def __init__(self, rip: int | None, timeout_s: float) -> None:
        super().__init__(uapi.KVM_EXIT_INTR, rip, f"no HLT or DONE_PORT write within {timeout_s:g} s")
        self.timeout_s = timeout_s


def unavailable(cap: int | None = uapi.KVM_CAP_IOFD, cap_name: str = "KVM_CAP_IOFD",
                kvm_path: str = "/dev/kvm") -> str | None:
    """Why this machine cannot run VMs with ``cap`` (default: the patched
    kernel's KVM_IOFD), or None when it can.  Tests skip with this reason."""
    if not os.path.exists(kvm_path):
        return f"{kvm_path} does not exist (is kvm_intel/kvm_amd loaded?)"
    try:
        with Vm(kvm_path=kvm_path) as vm:
            if cap is not None and not vm.check_extension(cap):
                return f"KVM_CHECK_EXTENSION({cap_name}) is 0" + (
                    ": not the patched kernel" if cap == uapi.KVM_CAP_IOFD else "")
    except OSError as exc:
        return f"cannot create a VM: {exc}"
    return None


@contextmanager
def deadline_alarm(timeout_s: float | None) -> Iterator[None]:
    """Make a blocked KVM_RUN return -EINTR once ``timeout_s`` has passed.

    KVM_RUN returns -EINTR whenever a signal is pending, so a SIGALRM armed
    for the deadline (and repeated, in case it lands while we are not inside
    KVM_RUN) is enough to regain control of a guest that never exits.  The
    timer fires only after the deadline, so it never adds KVM_RUN returns to
    a run that finishes in time.  Python lets only the main thread install
    signal handlers; elsewhere pass ``timeout_s=None``.
    """
    if timeout_s is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("a run time limit needs the main thread (SIGALRM); pass timeout_s=None")
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.setitimer(signal.ITIMER_REAL, timeout_s, WATCHDOG_PERIOD_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Exit:
    """One I/O access that reached userspace, as the handler sees it."""

    kind: str  # "io" or "mmio"
    addr: int  # port number, or guest physical address
    size: int
    is_write: bool
    data: int = 0  # the value written; 0 for reads


Handler = Callable[[Exit], "int | None"]
"""Called for each exiting access; its return value (default 0) is what a
read returns to the guest."""


@dataclass
class RunResult:
    """What one run of a program did, counted from KVM_RUN's point of view."""

    exits: int = 0
    """KVM_RUN returns that reported an exit, the final one included
    (returns forced by a signal are counted in ``interrupted`` instead)."""
    by_reason: Counter[str] = field(default_factory=Counter)
    handled: int = 0
    """I/O and MMIO exits serviced before the end (handler or zero-fill)."""
    interrupted: int = 0
    end: str = ""  # "hlt" or "done"
    done_value: int | None = None
    """EAX as written to DONE_PORT: the program's result."""
    seconds: float = 0.0


class Vm(IoctlFd):
    """A KVM VM with one anonymous-memory slot at GPA 0."""

    def __init__(self, mem_size: int = RAM_SIZE, kvm_path: str = "/dev/kvm") -> None:
        self.kvm_fd = os.open(kvm_path, os.O_RDWR | os.O_CLOEXEC)
        self.fd = -1
        self.mem: mmap.mmap | None = None
        self._mem_view: ctypes.Array[ctypes.c_char] | None = None
        self.vcpus: list[Vcpu] = []
        try:
            version = ioctl(self.kvm_fd, uapi.KVM_GET_API_VERSION)
            if version != uapi.KVM_API_VERSION:
                raise RuntimeError(f"KVM API version {version}, expected {uapi.KVM_API_VERSION}")
            self.fd = ioctl(self.kvm_fd, uapi.KVM_CREATE_VM, 0)
            self.ioctl(uapi.KVM_SET_TSS_ADDR, TSS_ADDR)
            self.mem = mmap.mmap(-1, mem_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self._mem_view = (ctypes.c_char * mem_size).from_buffer(self.mem)
            region = uapi.KvmUserspaceMemoryRegion(
                slot=0,
                flags=0,
                guest_phys_addr=0,
                memory_size=mem_size,
                userspace_addr=self.ram_address,
            )
            self.ioctl(uapi.KVM_SET_USER_MEMORY_REGION, region)
        except BaseException:
            self.close()
            raise
        self.mem_size = mem_size

    # -- capabilities and devices ------------------------------------------------
    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION on the VM fd (per-VM answers, e.g. the coalesced ring's page)."""
        return self.ioctl(uapi.KVM_CHECK_EXTENSION, cap)

    def kvm_check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION on /dev/kvm (system-wide answer)."""
        return ioctl(self.kvm_fd, uapi.KVM_CHECK_EXTENSION, cap)

    def create_irqchip(self) -> None:
        """In-kernel PIC/IOAPIC/LAPIC; afterwards KVM handles HLT and the PIC ports."""
        self.ioctl(uapi.KVM_CREATE_IRQCHIP)

    def create_pit2(self, *, speaker_dummy: bool = False) -> None:
        """In-kernel i8254 PIT at ports 0x40-0x43 (KVM_CREATE_PIT2, after
        :meth:`create_irqchip`); ``speaker_dummy`` also claims 0x61-0x64 for
        a dummy PC speaker (KVM_PIT_SPEAKER_DUMMY)."""
        config = uapi.KvmPitConfig(flags=uapi.KVM_PIT_SPEAKER_DUMMY if speaker_dummy else 0)
        self.ioctl(uapi.KVM_CREATE_PIT2, config)

    def register_coalesced_mmio(self, addr: int, size: int, *, pio: bool = False) -> None:
        """KVM_REGISTER_COALESCED_MMIO: guest writes inside [addr, addr+size)
        (ports with ``pio``) are queued in the ring (:meth:`Vcpu.take_coalesced`)
        and make no exit of their own."""
        zone = uapi.KvmCoalescedMmioZone(addr=addr, size=size, pio=int(pio))
        self.ioctl(uapi.KVM_REGISTER_COALESCED_MMIO, zone)

    def ioeventfd(
        self,
        addr: int,
        length: int,
        fd: int,
        *,
        pio: bool = False,
        datamatch: int | None = None,
        deassign: bool = False,
    ) -> None:
        """Mainline KVM_IOEVENTFD; without ``datamatch`` any value matches."""
        self.ioctl(uapi.KVM_IOEVENTFD, uapi.ioeventfd_args(
            addr, length, fd, pio=pio, datamatch=datamatch, deassign=deassign))

    def assign_iofd(self, addr: int, length: int, fd: int, *, pio: bool = False,
                    buffer: int | None = None) -> None:
        """KVM_IOFD: signal ``fd`` on each guest write inside [addr, addr+length).

        With ``buffer`` (a user address of ``length`` bytes, e.g. a
        :class:`~payload.kvm.buffer.RegisterBuffer`'s), KVM_IOFD_FLAG_BUFFER
        is set: each write is stored there before the signal and reads are
        served from it.  What the kernel must reject is built with
        :func:`~payload.kvm.uapi.iofd_args` and sent with ``try_ioctl``.
        """
        self.ioctl(uapi.KVM_IOFD, uapi.iofd_args(addr, length, fd, pio=pio, buffer=buffer))

    def deassign_iofd(self, addr: int, length: int, fd: int, *, pio: bool = False,
                      buffer: int | None = None) -> None:
        """KVM_IOFD with KVM_IOFD_FLAG_DEASSIGN: remove the iofd that
        :meth:`assign_iofd` made with these arguments (ENOENT if none)."""
        self.ioctl(uapi.KVM_IOFD, uapi.iofd_args(addr, length, fd, pio=pio, deassign=True,
                                                 buffer=buffer))

    def hyperv_eventfd(self, conn_id: int, fd: int, deassign: bool = False) -> None:
        """KVM_HYPERV_EVENTFD: a guest SIGNAL_EVENT hypercall for ``conn_id``
        signals ``fd`` in the kernel (the vCPU must have Hyper-V enabled,
        see :meth:`Vcpu.enable_hyperv`)."""
        self.ioctl(uapi.KVM_HYPERV_EVENTFD, uapi.hyperv_eventfd_args(conn_id, fd, deassign=deassign))

    # -- memory and vCPUs ------------------------------------------------------------
    @property
    def ram_address(self) -> int:
        """The user address of guest physical 0, for code that reads guest
        RAM in place (a device thread loading tails from a shadow array)."""
        assert self._mem_view is not None
        return ctypes.addressof(self._mem_view)

    def write(self, gpa: int, data: bytes) -> None:
        """Copy ``data`` into guest RAM."""
        assert self.mem is not None
        if gpa < 0 or gpa + len(data) > self.mem_size:
            raise ValueError(f"{gpa:#x}+{len(data)} is outside guest RAM")
        self.mem[gpa : gpa + len(data)] = data

    def read(self, gpa: int, length: int) -> bytes:
        """Copy ``length`` bytes out of guest RAM."""
        assert self.mem is not None
        if gpa < 0 or gpa + length > self.mem_size:
            raise ValueError(f"{gpa:#x}+{length} is outside guest RAM")
        return self.mem[gpa : gpa + length]

    def load(self, program: Loadable | bytes, addr: int | None = None) -> int:
        """Put a program in RAM (at its origin by default); returns the address."""
        if isinstance(program, bytes | bytearray):
            code, origin = bytes(program), LOAD_ADDR
        else:
            code, origin = program.code, program.origin
        self.write(origin if addr is None else addr, code)
        return origin if addr is None else addr

    def create_vcpu(self, entry: int = LOAD_ADDR) -> Vcpu:
        """A vCPU in real mode about to execute at ``entry``."""
        vcpu = Vcpu(self, len(self.vcpus), entry)
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        """Release vCPUs, the VM and its memory; safe to call twice."""
        for vcpu in self.vcpus:
            vcpu.close()
        self.vcpus.clear()
        for attr in ("fd", "kvm_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        self._mem_view = None  # drop the buffer export before unmapping
        if self.mem is not None:
            self.mem.close()
            self.mem = None

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Vcpu(IoctlFd):
    """A vCPU and its mmap'd ``struct kvm_run``."""

    def __init__(self, vm: Vm, index: int, entry: int) -> None:
        self.vm = vm
        self.fd = vm.ioctl(uapi.KVM_CREATE_VCPU, index)
        self._map_addr = 0
        self._map_size = 0
        self.run: uapi.KvmRun | None = None
        try:
            size = ioctl(vm.kvm_fd, uapi.KVM_GET_VCPU_MMAP_SIZE)
            # libc mmap, not mmap.mmap: a ctypes view of an mmap.mmap pins it
            # (any stray reference, e.g. in a traceback, makes close() fail).
            addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, self.fd, 0)
            if not mapped(addr):
                raise last_error("mmap of kvm_run")
            self._map_addr, self._map_size = addr, size
            self.run = uapi.KvmRun.from_address(addr)
            self.reset(entry)
        except BaseException:
            self.close()
            raise

    @property
    def run_addr(self) -> int:
        """Address of the shared kvm_run, for native code (see payload.native)."""
        assert self.run is not None
        return ctypes.addressof(self.run)

    # -- registers ------------------------------------------------------------------
    def get_regs(self) -> uapi.KvmRegs:
        regs = uapi.KvmRegs()
        self.ioctl(uapi.KVM_GET_REGS, regs)
        return regs

    def set_regs(self, regs: uapi.KvmRegs) -> None:
        self.ioctl(uapi.KVM_SET_REGS, regs)

    def get_sregs(self) -> uapi.KvmSregs:
        sregs = uapi.KvmSregs()
        self.ioctl(uapi.KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs: uapi.KvmSregs) -> None:
        self.ioctl(uapi.KVM_SET_SREGS, sregs)

    def set_segment_base(self, seg: str, base: int) -> None:
        """Point a segment's hidden base anywhere, selector unchanged, so one
        real-mode access through it (an override prefix) reaches addresses
        such as the IOAPIC's that DS = 0 cannot."""
        sregs = self.get_sregs()
        getattr(sregs, seg).base = base
        self.set_sregs(sregs)

    def enable_sse(self) -> None:
        """Let the guest run SSE instructions (a 16-byte ``movdqu``): without
        CR4.OSFXSR they raise #UD even in real mode, and so they do with
        CR0.EM set; CR0.TS would make them raise #NM."""
        sregs = self.get_sregs()
        sregs.cr4 |= CR4_OSFXSR
        sregs.cr0 = (sregs.cr0 | CR0_MP) & ~(CR0_EM | CR0_TS)
        self.set_sregs(sregs)

    def set_cpuid(self, entries: list[uapi.KvmCpuidEntry2]) -> None:
        """KVM_SET_CPUID2: what CPUID reports to the guest, and which
        paravirtual interfaces KVM offers it (e.g. Hyper-V's)."""
        arg = uapi.cpuid2(len(entries))
        for i, e in enumerate(entries):
            arg.entries[i] = e
        self.ioctl(uapi.KVM_SET_CPUID2, arg)

    def set_msrs(self, values: dict[int, int]) -> None:
        """KVM_SET_MSRS, host-initiated; every MSR must be accepted."""
        done = self.ioctl(uapi.KVM_SET_MSRS, uapi.msrs(values))
        if done != len(values):
            index = list(values)[done]
            raise OSError(errno.EINVAL, f"KVM_SET_MSRS refused MSR {index:#x}")

    def enable_hyperv(self, guest_os_id: int = HV_LINUX_GUEST_OS_ID) -> None:
        """Offer the guest Hyper-V and let it make Hyper-V hypercalls.

        KVM routes a hypercall to its Hyper-V code only when CPUID carries the
        Hyper-V interface signature and the guest OS id MSR is nonzero; both
        are set here from the VMM, as a Hyper-V-aware VMM would.  The CPUID
        leaves are the ones KVM itself supports (KVM_GET_SUPPORTED_HV_CPUID).
        """
        arg = uapi.cpuid2(64)
        self.ioctl(uapi.KVM_GET_SUPPORTED_HV_CPUID, arg)
        self.set_cpuid(list(arg.entries[: arg.nent]))
        self.set_msrs({uapi.HV_X64_MSR_GUEST_OS_ID: guest_os_id})

    def rip(self) -> int | None:
        """Guest RIP for error messages; None if even that fails."""
        try:
            return self.get_regs().rip
        except OSError:
            return None

    def reset(self, entry: int = LOAD_ADDR) -> None:
        """Real mode, flat segment 0 (base = selector = 0), RIP = ``entry``.

        The vCPU powers on at F000:FFF0 with CS.base = 0xFFFF0000; moving
        every segment to 0 makes guest addresses equal offsets.
        """
        sregs = self.get_sregs()
        for name in ("cs", "ds", "es", "fs", "gs", "ss"):
            seg = getattr(sregs, name)
            seg.base = 0
            seg.selector = 0
        self.set_sregs(sregs)
        self.set_regs(uapi.KvmRegs(rip=entry, rflags=0x2))  # bit 1 is reserved-set

    # -- running ----------------------------------------------------------------------
    def run_to_halt(
        self,
        handler: Handler | None = None,
        timeout_s: float | None = 10.0,
        done_port: int = DONE_PORT,
    ) -> RunResult:
        """KVM_RUN until HLT or an ``out`` to ``done_port``; count every exit.

        Port and MMIO exits go to ``handler`` (reads get its return value,
        zero without a handler).  Anything else is a :class:`GuestError`.
        """
        assert self.run is not None
        run = self.run
        result = RunResult()
        start = time.monotonic()
        deadline = None if timeout_s is None else start + timeout_s
        with deadline_alarm(timeout_s):
            while True:
                try:
                    self.ioctl(uapi.KVM_RUN)
                except InterruptedError:
                    result.interrupted += 1
                    if deadline is not None and time.monotonic() >= deadline:
                        raise GuestTimeout(self.rip(), timeout_s or 0.0) from None
                    continue
                result.exits += 1
                reason = run.exit_reason
                result.by_reason[uapi.exit_reason_name(reason)] += 1
                if reason == uapi.KVM_EXIT_IO:
                    io = run.io
                    if io.direction == uapi.KVM_EXIT_IO_OUT and io.port == done_port:
                        result.end = "done"
                        base = io.data_offset
                        result.done_value = int.from_bytes(
                            ctypes.string_at(self._map_addr + base, io.size), "little"
                        )
                        break
                    self._service_io(handler)
                    result.handled += 1
                elif reason == uapi.KVM_EXIT_MMIO:
                    self._service_mmio(handler)
                    result.handled += 1
                elif reason == uapi.KVM_EXIT_HLT:
                    result.end = "hlt"
                    break
                else:
                    raise GuestError(reason, self.rip(), self.describe_exit())
                if deadline is not None and time.monotonic() >= deadline:
                    raise GuestTimeout(self.rip(), timeout_s or 0.0)
        result.seconds = time.monotonic() - start
        return result

    def _service_io(self, handler: Handler | None) -> None:
        """Complete a KVM_EXIT_IO: data for each of ``count`` items sits at
        ``kvm_run + data_offset``; for ``in`` KVM copies it to the guest on
        the next KVM_RUN."""
        assert self.run is not None
        io = self.run.io
        is_write = io.direction == uapi.KVM_EXIT_IO_OUT
        for i in range(io.count):
            off = io.data_offset + i * io.size
            if is_write:
                value = int.from_bytes(ctypes.string_at(self._map_addr + off, io.size), "little")
                if handler is not None:
                    handler(Exit("io", io.port, io.size, True, value))
            else:
                value = (handler(Exit("io", io.port, io.size, False)) if handler else 0) or 0
                data = (value & ((1 << 8 * io.size) - 1)).to_bytes(io.size, "little")
                ctypes.memmove(self._map_addr + off, data, io.size)

    def _service_mmio(self, handler: Handler | None) -> None:
        """Complete a KVM_EXIT_MMIO: write data is in ``mmio.data``; read data
        goes back there for KVM to finish the instruction."""
        assert self.run is not None
        mmio = self.run.mmio
        size = mmio.len
        if mmio.is_write:
            value = int.from_bytes(bytes(mmio.data)[:size], "little")
            if handler is not None:
                handler(Exit("mmio", mmio.phys_addr, size, True, value))
        else:
            value = (handler(Exit("mmio", mmio.phys_addr, size, False)) if handler else 0) or 0
            data = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
            ctypes.memmove(mmio.data, data.ljust(8, b"\0"), 8)

    def take_coalesced(self) -> list[Exit]:
        """Consume the coalesced MMIO ring: the writes KVM queued instead of
        exiting, oldest first, each as the :class:`Exit` it would have been.

        The ring is the VM's, shown in every vCPU's mapping at the page that
        KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) names.  KVM appends at
        ``last``; moving ``first`` up to it frees the entries, as a VMM does.
        """
        page = self.vm.check_extension(uapi.KVM_CAP_COALESCED_MMIO)
        if not page or (page + 1) * mmap.PAGESIZE > self._map_size:
            raise RuntimeError(f"no coalesced MMIO ring in the vCPU mapping (page offset {page})")
        ring_addr = self._map_addr + page * mmap.PAGESIZE
        ring = uapi.KvmCoalescedMmioRing.from_address(ring_addr)
        entry_size = ctypes.sizeof(uapi.KvmCoalescedMmio)
        capacity = (mmap.PAGESIZE - ctypes.sizeof(uapi.KvmCoalescedMmioRing)) // entry_size
        first_entry = ring_addr + uapi.KvmCoalescedMmioRing.coalesced_mmio.offset
        taken = []
        while ring.first != ring.last:
            entry = uapi.KvmCoalescedMmio.from_address(first_entry + ring.first * entry_size)
            data = int.from_bytes(bytes(entry.data)[: entry.len], "little")
            taken.append(Exit("io" if entry.pio else "mmio", entry.phys_addr, entry.len, True, data))
            ring.first = (ring.first + 1) % capacity
        return taken

    def describe_exit(self) -> str:
        """Extra detail for the exit reasons that carry some."""
        assert self.run is not None
        run = self.run
        if run.exit_reason == uapi.KVM_EXIT_FAIL_ENTRY:
            return f"hardware_entry_failure_reason={run.fail_entry.hardware_entry_failure_reason:#x}"
        if run.exit_reason == uapi.KVM_EXIT_INTERNAL_ERROR:
            data = ", ".join(f"{d:#x}" for d in run.internal.data[: min(run.internal.ndata, 16)])
            return f"suberror={run.internal.suberror} data=[{data}]"
        if run.exit_reason == uapi.KVM_EXIT_SHUTDOWN:
            return "triple fault"
        if run.exit_reason == uapi.KVM_EXIT_UNKNOWN:
            return f"hardware_exit_reason={run.hw.hardware_exit_reason:#x}"
        return "unexpected exit reason"

    def close(self) -> None:
        """Unmap kvm_run and close the vCPU fd; safe to call twice."""
        self.run = None
        if self._map_addr:
            _libc.munmap(self._map_addr, self._map_size)
            self._map_addr = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
