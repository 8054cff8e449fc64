"""The real kernel side of the fuzzer: VMs, the eventfd pool, bad fds.

Each :class:`~payload.fuzz.model.FdRef` is turned into a file descriptor
number here, at the moment the case runs, so a case means the same thing in
every replay even though fd numbers differ between processes.  Likewise each
:class:`~payload.fuzz.model.BufRef` becomes an address: the pool buffers
(RegisterBuffer, filled with ``initial_buffer``, the last one read-only
until a PROTECT case says otherwise)
and the PROT_NONE hole are mapped once per run and outlive VM resets, as
the model's buffer contents do.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from dataclasses import dataclass, field

from payload.fuzz import model as m
from payload.fuzz.model import BufRef, Case, FdRef
from payload.fuzz.program import probe_program, stage
from payload.guest import programs
from payload.kvm import uapi
from payload.kvm.buffer import RegisterBuffer
from payload.kvm.call import IoctlArg
from payload.kvm.ioctl import IOW
from payload.kvm.libc import libc as _libc
from payload.kvm.libc import mapped
from payload.kvm.vmm import Exit, GuestError, Vcpu, Vm

READ_VALUE = 0x5A5A5A5A
"""What the VMM answers to every read that exits during a probe."""
PROBE_TIMEOUT_S = 60.0
CLOSED_FD_CANDIDATES = range(777, 1000)
"""A number to use as 'closed': high enough that nothing in the process gets
it (Linux hands out the lowest free number)."""

PROT_NONE = 0  # not in the mmap module before Python 3.13
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000
BADSIZE_ROOM = 64
"""Bytes behind a BADSIZE case's pointer: the largest size it encodes."""


def _mmap(addr: int | None, length: int, prot: int, flags: int) -> int | None:
    """Anonymous mmap(2); None if it failed."""
    got = _libc.mmap(addr, length, prot, flags | mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    return int(got) if mapped(got) else None


def user_ptr_max() -> int:
    """The kernel's USER_PTR_MAX, which access_ok() compares with: a page
    just above 2**47 can be mapped only with 5-level paging."""
    probe = 1 << 47
    got = _mmap(probe, m.PAGE, PROT_NONE, MAP_FIXED_NOREPLACE)
    if got is None:
        return m.USER_PTR_MAX_4LEVEL
    _libc.munmap(got, m.PAGE)
    return m.USER_PTR_MAX_5LEVEL if got == probe else m.USER_PTR_MAX_4LEVEL


def mapped_ranges() -> list[tuple[int, int]]:
    """[start, end) of every mapping of this process."""
    with open("/proc/self/maps", encoding="ascii") as maps:
        spans = (line.split(None, 1)[0].split("-") for line in maps)
        return [(int(lo, 16), int(hi, 16)) for lo, hi in spans]


@dataclass
class ProbeResult:
    """What a probe program did, in the shape of ProbeExpect."""

    exits: list[tuple[str, int, int, bool, int]] = field(default_factory=list)
    signals: dict[int, int] = field(default_factory=dict)  # pool slot -> eventfd count
    result: int = 0
    end: str = ""
    kvm_exits: int = 0
    error: str = ""
    buffers: dict[int, bytes] = field(default_factory=dict)  # pool slot -> contents after


class KvmSide:
    """One fuzz VM (recreated by RESET_VM), a bystander VM, and the fds."""

    def __init__(self, slots: int, iofd: bool = True) -> None:
        self.iofd_supported = iofd
        self.vm: Vm | None = None
        self.other: Vm | None = None
        self.vcpu: Vcpu | None = None
        self.pool: list[tuple[int, int]] = []
        self._fds: list[int] = []
        self.buffers: list[RegisterBuffer] = []
        self.hole = 0
        try:
            for _ in range(slots):
                self.pool.append(self._new_eventfd())
            self._map_buffers()
            self.user_max = user_ptr_max()
            """USER_PTR_MAX, for the model's access_ok()."""
            problem = self._raw_ranges_mapped()
            if problem:
                raise RuntimeError(problem)
            r, w = os.pipe2(os.O_CLOEXEC)
            self.pipe = r
            self._fds += [r, w]
            self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            self._fds.append(self.devnull)
            self.closed_fd = next(n for n in CLOSED_FD_CANDIDATES if not _is_open(n))
            self.vm = Vm()
            self.other = Vm()
            self._populate_other()
            self.iofd_cap = self.vm.check_extension(uapi.KVM_CAP_IOFD) if iofd else 0
            """KVM_CHECK_EXTENSION(KVM_CAP_IOFD): 1 on the patched kernel (api.rst
            8.48), 0 without it; v1 of the series returned its per-VM limit."""
        except BaseException:
            self.close()
            raise

    # -- setup ------------------------------------------------------------------------
    @staticmethod
    def _new_eventfd() -> tuple[int, int]:
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return fd, os.dup(fd)

    def _map_buffers(self) -> None:
        """The pool, each buffer holding ``initial_buffer(slot)``, and the hole."""
        for slot in range(m.BUF_SLOTS):
            buf = RegisterBuffer(m.BUF_SIZE)
            self.buffers.append(buf)
            ctypes.memmove(buf.address, m.initial_buffer(slot), m.BUF_SIZE)
            if slot == m.READONLY_SLOT:
                buf.protect(writable=False)
        hole = _mmap(None, m.HOLE_SIZE, PROT_NONE, MAP_NORESERVE)
        if hole is None:
            raise OSError(ctypes.get_errno(), "mmap of the PROT_NONE hole failed")
        self.hole = hole

    def _raw_ranges_mapped(self) -> str | None:
        """The model assumes raw user buffers point at nothing; they come
        from [0, RAW_LOW_END) and the top TOP_SPAN bytes of user space, and a
        probe reaches at most PROBE_REACH bytes past a buffer's start."""
        low = (0, m.RAW_LOW_END + m.PROBE_REACH)
        top = (self.user_max - m.TOP_SPAN, self.user_max)
        for lo, hi in mapped_ranges():
            for want_lo, want_hi in (low, top):
                if lo < want_hi and want_lo < hi:
                    return (
                        f"[{lo:#x}, {hi:#x}) is mapped, where raw buffers "
                        f"[{want_lo:#x}, {want_hi:#x}) must find nothing"
                    )
        return None

    def buffer(self, ref: BufRef | None) -> int:
        """The address kvm_iofd.buffer gets for ``ref``."""
        if ref is None:
            return 0
        if ref.kind == m.POOL:
            return self.buffers[ref.slot].address + ref.offset
        if ref.kind == m.HOLE:
            return self.hole + ref.offset
        return ref.raw

    def _populate_other(self) -> None:
        """The bystander VM holds registrations where the fuzz VM's cluster:
        the overlap checks and the bus limits are per VM and must not see them."""
        assert self.other is not None
        if self.iofd_supported:
            self.other.assign_iofd(0x8000, 0x8000, self.pool[0][0], buffer=self.hole)
            self.other.assign_iofd(0x600, 0x200, self.pool[1 % len(self.pool)][0], pio=True)
        self.other.ioeventfd(m.DONE_PORT, 0, self.pool[-1][0], pio=True)

    def check_environment(self) -> str | None:
        """Why the fd kinds would not mean what the model says, or None."""
        if _is_open(self.closed_fd):
            return f"fd {self.closed_fd}, used as the closed fd, is open"
        return self._raw_ranges_mapped()

    # -- fds ----------------------------------------------------------------------------
    def fd(self, ref: FdRef | None) -> int:
        assert self.vm is not None and self.other is not None
        if ref is None:
            return -1
        kind = ref.kind
        if kind == m.EVENTFD:
            return self.pool[ref.slot][ref.alias]
        if kind == m.CLOSED:
            return self.closed_fd
        if kind in (m.NEGATIVE, m.HUGE):
            return ref.number
        return {
            m.PIPE: self.pipe,
            m.DEVNULL: self.devnull,
            m.VM_FD: self.vm.fd,
            m.OTHER_VM: self.other.fd,
            m.KVM_DEV: self.vm.kvm_fd,
        }[kind]

    # -- cases --------------------------------------------------------------------------
    def ioctl(self, case: Case) -> int:
        """Run an ioctl case; the errno it failed with, or 0."""
        assert self.vm is not None
        return self.vm.try_ioctl(*self._request(case))

    def _request(self, case: Case) -> tuple[int, IoctlArg]:
        """The request number and argument ``case`` sends, as it is, however
        wrong: the raw form neither checks nor fixes it."""
        if case.op == m.IOFD:
            return uapi.KVM_IOFD, self._iofd_args(case)
        if case.op == m.IOEVENTFD:
            return uapi.KVM_IOEVENTFD, uapi.KvmIoeventfd(
                datamatch=case.datamatch,
                addr=case.addr,
                len=case.length,
                fd=self.fd(case.fd),
                flags=case.flags,
            )
        if case.op == m.EFAULT_OP:
            return uapi.KVM_IOFD, 8  # an address in the zero page, which is never mapped
        if case.op == m.BADSIZE:  # room for every size the generator encodes
            return IOW(uapi.KVMIO, uapi.KVM_IOFD_NR, case.size), (ctypes.c_uint8 * BADSIZE_ROOM)()
        if case.op == m.COALESCED:
            zone = uapi.KvmCoalescedMmioZone(addr=case.addr, size=case.length, pio=int(case.pio))
            number = uapi.KVM_UNREGISTER_COALESCED_MMIO if case.deassign else uapi.KVM_REGISTER_COALESCED_MMIO
            return number, zone
        if case.op == m.IRQCHIP:
            return uapi.KVM_CREATE_IRQCHIP, 0
        if case.op == m.PIT:
            return uapi.KVM_CREATE_PIT2, uapi.KvmPitConfig(flags=case.flags)
        raise ValueError(f"{case.op!r} is not an ioctl case")

    def _iofd_args(self, case: Case) -> uapi.KvmIofd:
        """``case``'s struct kvm_iofd, its flags and pad as they are."""
        args = uapi.KvmIofd(
            addr=case.addr,
            len=case.length,
            fd=self.fd(case.fd),
            flags=case.flags,
            buffer=self.buffer(case.buffer),
        )
        if len(case.pad) != len(args.pad):
            raise ValueError(f"kvm_iofd.pad is {len(args.pad)} bytes, the case has {len(case.pad)}")
        ctypes.memmove(args.pad, case.pad, len(args.pad))
        return args

    def protect(self, slot: int, writable: bool) -> None:
        """mprotect a pool buffer under whatever iofds point at it."""
        self.buffers[slot].protect(writable)

    def recreate(self, slot: int) -> None:
        for fd in self.pool[slot]:
            os.close(fd)
        self.pool[slot] = self._new_eventfd()

    def reset_vm(self) -> None:
        """Destroy the fuzz VM with its registrations; a fresh one replaces it."""
        if self.vm is not None:
            self.vm.close()
        self.vm = None
        self.vcpu = None
        self.vm = Vm()

    def take(self, slot: int) -> int:
        """Read and clear the slot's eventfd count."""
        try:
            return os.eventfd_read(self.pool[slot][0])
        except BlockingIOError:
            return 0

    def probe(self, case: Case) -> ProbeResult:
        """Run the case's accesses in the fuzz VM and record what happened."""
        assert self.vm is not None
        out = ProbeResult()
        program = probe_program(case.accesses)
        self.vm.load(program)
        self.vm.write(programs.RESULT_ADDR, bytes(4))
        self.vm.write(*stage())
        if self.vcpu is None:
            self.vcpu = self.vm.create_vcpu(program.origin)
            self.vcpu.enable_sse()  # for the 16-byte stores
        else:
            self.vcpu.reset(program.origin)
        seen: list[Exit] = []

        def handler(exit_: Exit) -> int:
            seen.append(exit_)
            return READ_VALUE

        try:
            run = self.vcpu.run_to_halt(handler=handler, timeout_s=PROBE_TIMEOUT_S)
        except GuestError as exc:
            out.error = str(exc)
        else:
            out.end = run.end
            out.kvm_exits = run.exits
        out.exits = [(e.kind, e.addr, e.size, e.is_write, e.data) for e in seen]
        out.result = int.from_bytes(self.vm.read(programs.RESULT_ADDR, 4), "little")
        out.signals = {slot: self.take(slot) for slot in range(len(self.pool))}
        out.buffers = {slot: buf.bytes() for slot, buf in enumerate(self.buffers)}
        return out

    def close(self) -> None:
        for vm in (self.vm, self.other):
            if vm is not None:
                vm.close()
        self.vm = self.other = None
        self.vcpu = None
        for pair in self.pool:
            for fd in pair:
                os.close(fd)
        self.pool = []
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        # The VMs are gone, so no iofd points at the buffers any more.
        for buf in self.buffers:
            buf.close()
        self.buffers = []
        if self.hole:
            _libc.munmap(self.hole, m.HOLE_SIZE)
            self.hole = 0


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            return False
        raise
    return True
