"""ctypes bindings for the slice of the KVM uAPI the harness uses.

Numbers and layouts mirror Linux 7.3 ``include/uapi/linux/kvm.h`` and
``arch/x86/include/uapi/asm/kvm.h`` (x86-64 only), plus the KVM_IOFD
additions from our kernel patch.  Nothing here is derived at run time from
headers, so :data:`LAYOUT` exists to let a test compile a C probe against
real headers and prove every number and offset below matches.
"""

from __future__ import annotations

import ctypes
from ctypes import c_char, c_int32, c_uint8, c_uint16, c_uint32, c_uint64

from payload.kvm.ioctl import IO, IOR, IOW, IOWR

KVMIO = 0xAE
KVM_API_VERSION = 12

# --- capabilities (KVM_CHECK_EXTENSION arguments) ---------------------------
KVM_CAP_IRQCHIP = 0
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_COALESCED_MMIO = 15
"""Coalesced MMIO exists; KVM_CHECK_EXTENSION returns the ring's page offset
in the vCPU mmap (the ring is per VM, mapped through every vCPU)."""
KVM_CAP_IOEVENTFD = 36
KVM_CAP_IOEVENTFD_NO_LENGTH = 100
KVM_CAP_IOEVENTFD_ANY_LENGTH = 122
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_HYPERV = 44
KVM_CAP_HYPERV_EVENTFD = 154
KVM_CAP_HYPERV_CPUID = 167
KVM_CAP_IOFD = 252
"""KVM_IOFD exists; KVM_CHECK_EXTENSION returns 1 (api.rst 8.48).  It is not a
count: iofds are bounded per io bus, like every device there, at 1000 devices
other than ioeventfds (NR_IOBUS_DEVS), then ENOSPC.  (Series v1 returned a
per-VM limit of 256.)  A placeholder number far from mainline's, until a
maintainer assigns one."""

# --- exit reasons (kvm_run.exit_reason) -------------------------------------
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24

EXIT_REASON_NAMES: dict[int, str] = {
    value: name
    for name, value in globals().items()
    if name.startswith("KVM_EXIT_") and isinstance(value, int)
}


def exit_reason_name(reason: int) -> str:
    """``KVM_EXIT_SHUTDOWN`` rather than ``8`` in error messages."""
    return EXIT_REASON_NAMES.get(reason, f"KVM_EXIT_<{reason}>")


KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4

# --- flags -------------------------------------------------------------------
KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0
KVM_IOEVENTFD_FLAG_PIO = 1 << 1
KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2

KVM_IOFD_FLAG_DEASSIGN = 1 << 0
KVM_IOFD_FLAG_PIO = 1 << 1
KVM_IOFD_FLAG_BUFFER = 1 << 2

KVM_PIT_SPEAKER_DUMMY = 1
"""KVM_CREATE_PIT2 flag: also claim ports 0x61-0x64 for a dummy PC speaker."""

KVM_NR_INTERRUPTS = 256


# --- structs -----------------------------------------------------------------
class KvmRegs(ctypes.Structure):
    """``struct kvm_regs``: general-purpose registers (KVM_GET/SET_REGS)."""

    _fields_ = [
        (name, c_uint64)
        for name in (
            *("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp"),
            *("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"),
            *("rip", "rflags"),
        )
    ]


class KvmSegment(ctypes.Structure):
    """``struct kvm_segment``: one segment register's hidden state."""

    _fields_ = [
        ("base", c_uint64),
        ("limit", c_uint32),
        ("selector", c_uint16),
        ("type", c_uint8),
        ("present", c_uint8),
        ("dpl", c_uint8),
        ("db", c_uint8),
        ("s", c_uint8),
        ("l", c_uint8),
        ("g", c_uint8),
        ("avl", c_uint8),
        ("unusable", c_uint8),
        ("padding", c_uint8),
    ]


class KvmDtable(ctypes.Structure):
    """``struct kvm_dtable``: GDTR/IDTR."""

    _fields_ = [("base", c_uint64), ("limit", c_uint16), ("padding", c_uint16 * 3)]


class KvmSregs(ctypes.Structure):
    """``struct kvm_sregs``: segments, descriptor tables, control registers."""

    _fields_ = [
        *((seg, KvmSegment) for seg in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")),
        ("gdt", KvmDtable),
        ("idt", KvmDtable),
        *((reg, c_uint64) for reg in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")),
        ("interrupt_bitmap", c_uint64 * ((KVM_NR_INTERRUPTS + 63) // 64)),
    ]


class KvmUserspaceMemoryRegion(ctypes.Structure):
    """``struct kvm_userspace_memory_region`` (KVM_SET_USER_MEMORY_REGION)."""

    _fields_ = [
        ("slot", c_uint32),
        ("flags", c_uint32),
        ("guest_phys_addr", c_uint64),
        ("memory_size", c_uint64),
        ("userspace_addr", c_uint64),
    ]


class KvmIoeventfd(ctypes.Structure):
    """``struct kvm_ioeventfd``: mainline single-address write notifier."""

    _fields_ = [
        ("datamatch", c_uint64),
        ("addr", c_uint64),
        ("len", c_uint32),
        ("fd", c_int32),
        ("flags", c_uint32),
        ("pad", c_uint8 * 36),
    ]


class KvmIofd(ctypes.Structure):
    """``struct kvm_iofd``: our patch's doorbell register bank (32 bytes).

    ``buffer`` (a user address) sits where v1 had the last 8 of 12 padding
    bytes, so a binary that leaves it zero sees v1's behaviour."""

    _fields_ = [
        ("addr", c_uint64),
        ("len", c_uint32),
        ("fd", c_int32),
        ("flags", c_uint32),
        ("pad", c_uint8 * 4),
        ("buffer", c_uint64),
    ]


class KvmCoalescedMmioZone(ctypes.Structure):
    """``struct kvm_coalesced_mmio_zone``: writes inside it are queued in the
    ring instead of exiting.  ``pio`` shares a union with ``pad``."""

    _fields_ = [("addr", c_uint64), ("size", c_uint32), ("pio", c_uint32)]


class KvmCoalescedMmio(ctypes.Structure):
    """``struct kvm_coalesced_mmio``: one queued write in the ring."""

    _fields_ = [
        ("phys_addr", c_uint64),
        ("len", c_uint32),
        ("pio", c_uint32),
        ("data", c_uint8 * 8),
    ]


class KvmCoalescedMmioRing(ctypes.Structure):
    """``struct kvm_coalesced_mmio_ring``: KVM appends at ``last``, the VMM
    consumes from ``first``; the entries fill the rest of the page."""

    _fields_ = [("first", c_uint32), ("last", c_uint32), ("coalesced_mmio", KvmCoalescedMmio * 0)]


class KvmPitConfig(ctypes.Structure):
    """``struct kvm_pit_config`` (KVM_CREATE_PIT2)."""

    _fields_ = [("flags", c_uint32), ("pad", c_uint32 * 15)]


class KvmCpuidEntry2(ctypes.Structure):
    """``struct kvm_cpuid_entry2``: one CPUID leaf (and subleaf) a vCPU reports."""

    _fields_ = [
        ("function", c_uint32),
        ("index", c_uint32),
        ("flags", c_uint32),
        ("eax", c_uint32),
        ("ebx", c_uint32),
        ("ecx", c_uint32),
        ("edx", c_uint32),
        ("padding", c_uint32 * 3),
    ]


class KvmCpuid2(ctypes.Structure):
    """``struct kvm_cpuid2`` without its flexible array: the ioctl's size.
    :func:`cpuid2` builds one with room for the entries."""

    _fields_ = [("nent", c_uint32), ("padding", c_uint32)]


def cpuid2(nent: int) -> KvmCpuid2:
    """A ``struct kvm_cpuid2`` followed by ``nent`` entries.  It derives from
    :class:`KvmCpuid2`, as the C caller's pointer is to the header: the
    checked ioctl accepts it for the request's (header) size."""

    class Cpuid2(KvmCpuid2):
        _fields_ = [("entries", KvmCpuidEntry2 * nent)]

    return Cpuid2(nent=nent)


class KvmMsrEntry(ctypes.Structure):
    """``struct kvm_msr_entry``."""

    _fields_ = [("index", c_uint32), ("reserved", c_uint32), ("data", c_uint64)]


class KvmMsrs(ctypes.Structure):
    """``struct kvm_msrs`` without its flexible array (see :func:`msrs`)."""

    _fields_ = [("nmsrs", c_uint32), ("pad", c_uint32)]


def msrs(values: dict[int, int]) -> KvmMsrs:
    """A ``struct kvm_msrs`` holding ``index -> value`` for KVM_SET_MSRS
    (deriving from :class:`KvmMsrs`, like :func:`cpuid2`)."""

    class Msrs(KvmMsrs):
        _fields_ = [("entries", KvmMsrEntry * len(values))]

    m = Msrs(nmsrs=len(values))
    for i, (index, data) in enumerate(values.items()):
        m.entries[i].index, m.entries[i].data = index, data
    return m


class KvmHypervEventfd(ctypes.Structure):
    """``struct kvm_hyperv_eventfd``: binds a Hyper-V connection id to an eventfd."""

    _fields_ = [("conn_id", c_uint32), ("fd", c_int32), ("flags", c_uint32), ("padding", c_uint32 * 3)]


KVM_HYPERV_CONN_ID_MASK = 0x00FFFFFF
KVM_HYPERV_EVENTFD_DEASSIGN = 1 << 0
HYPERV_CPUID_INTERFACE = 0x40000001
HV_X64_MSR_GUEST_OS_ID = 0x40000000


class KvmRunIo(ctypes.Structure):
    """``kvm_run.io`` (KVM_EXIT_IO); data lives at ``run + data_offset``."""

    _fields_ = [
        ("direction", c_uint8),
        ("size", c_uint8),
        ("port", c_uint16),
        ("count", c_uint32),
        ("data_offset", c_uint64),
    ]


class KvmRunMmio(ctypes.Structure):
    """``kvm_run.mmio`` (KVM_EXIT_MMIO)."""

    _fields_ = [
        ("phys_addr", c_uint64),
        ("data", c_uint8 * 8),
        ("len", c_uint32),
        ("is_write", c_uint8),
    ]


class KvmRunFailEntry(ctypes.Structure):
    """``kvm_run.fail_entry`` (KVM_EXIT_FAIL_ENTRY)."""

    _fields_ = [("hardware_entry_failure_reason", c_uint64), ("cpu", c_uint32)]


class KvmRunHw(ctypes.Structure):
    """``kvm_run.hw`` (KVM_EXIT_UNKNOWN)."""

    _fields_ = [("hardware_exit_reason", c_uint64)]


class KvmRunInternal(ctypes.Structure):
    """``kvm_run.internal`` (KVM_EXIT_INTERNAL_ERROR)."""

    _fields_ = [("suberror", c_uint32), ("ndata", c_uint32), ("data", c_uint64 * 16)]


class KvmRunExitUnion(ctypes.Union):
    """The anonymous exit-information union; the kernel pads it to 256 bytes."""

    _fields_ = [
        ("hw", KvmRunHw),
        ("fail_entry", KvmRunFailEntry),
        ("io", KvmRunIo),
        ("mmio", KvmRunMmio),
        ("internal", KvmRunInternal),
        ("padding", c_char * 256),
    ]


SYNC_REGS_SIZE_BYTES = 2048


class KvmRun(ctypes.Structure):
    """``struct kvm_run``: the page shared with KVM through the vCPU mmap.

    Only the header and the exit members the harness reads are spelled out;
    the union is anonymous in C, so ``run.io`` works here as it does there.
    """

    _anonymous_ = ("u",)
    _fields_ = [
        ("request_interrupt_window", c_uint8),
        ("immediate_exit", c_uint8),
        ("padding1", c_uint8 * 6),
        ("exit_reason", c_uint32),
        ("ready_for_interrupt_injection", c_uint8),
        ("if_flag", c_uint8),
        ("flags", c_uint16),
        ("cr8", c_uint64),
        ("apic_base", c_uint64),
        ("u", KvmRunExitUnion),
        ("kvm_valid_regs", c_uint64),
        ("kvm_dirty_regs", c_uint64),
        ("s", c_char * SYNC_REGS_SIZE_BYTES),
    ]


# --- ioctl numbers -------------------------------------------------------------
# System ioctls (on the /dev/kvm fd).
KVM_GET_API_VERSION = IO(KVMIO, 0x00)
KVM_CREATE_VM = IO(KVMIO, 0x01)
KVM_CHECK_EXTENSION = IO(KVMIO, 0x03)
KVM_GET_VCPU_MMAP_SIZE = IO(KVMIO, 0x04)
# VM ioctls.
KVM_CREATE_VCPU = IO(KVMIO, 0x41)
KVM_SET_USER_MEMORY_REGION = IOW(KVMIO, 0x46, KvmUserspaceMemoryRegion)
KVM_SET_TSS_ADDR = IO(KVMIO, 0x47)
KVM_CREATE_IRQCHIP = IO(KVMIO, 0x60)
KVM_REGISTER_COALESCED_MMIO = IOW(KVMIO, 0x67, KvmCoalescedMmioZone)
KVM_UNREGISTER_COALESCED_MMIO = IOW(KVMIO, 0x68, KvmCoalescedMmioZone)
KVM_CREATE_PIT2 = IOW(KVMIO, 0x77, KvmPitConfig)
KVM_IOEVENTFD = IOW(KVMIO, 0x79, KvmIoeventfd)
KVM_IOFD_NR = 0xDB
"""KVM_IOFD's ioctl number (a placeholder like KVM_CAP_IOFD), kept apart so
the fuzzer can encode it with a wrong struct size."""
KVM_IOFD = IOW(KVMIO, KVM_IOFD_NR, KvmIofd)
KVM_HYPERV_EVENTFD = IOW(KVMIO, 0xBD, KvmHypervEventfd)
# vCPU ioctls.
KVM_RUN = IO(KVMIO, 0x80)
KVM_GET_REGS = IOR(KVMIO, 0x81, KvmRegs)
KVM_SET_REGS = IOW(KVMIO, 0x82, KvmRegs)
KVM_GET_SREGS = IOR(KVMIO, 0x83, KvmSregs)
KVM_SET_SREGS = IOW(KVMIO, 0x84, KvmSregs)
KVM_SET_MSRS = IOW(KVMIO, 0x89, KvmMsrs)
KVM_SET_CPUID2 = IOW(KVMIO, 0x90, KvmCpuid2)
KVM_GET_SUPPORTED_HV_CPUID = IOWR(KVMIO, 0xC1, KvmCpuid2)

IOCTLS: tuple[str, ...] = (
    "KVM_GET_API_VERSION",
    "KVM_CREATE_VM",
    "KVM_CHECK_EXTENSION",
    "KVM_GET_VCPU_MMAP_SIZE",
    "KVM_CREATE_VCPU",
    "KVM_SET_USER_MEMORY_REGION",
    "KVM_SET_TSS_ADDR",
    "KVM_CREATE_IRQCHIP",
    "KVM_REGISTER_COALESCED_MMIO",
    "KVM_UNREGISTER_COALESCED_MMIO",
    "KVM_CREATE_PIT2",
    "KVM_IOEVENTFD",
    "KVM_IOFD",
    "KVM_HYPERV_EVENTFD",
    "KVM_SET_MSRS",
    "KVM_SET_CPUID2",
    "KVM_GET_SUPPORTED_HV_CPUID",
    "KVM_RUN",
    "KVM_GET_REGS",
    "KVM_SET_REGS",
    "KVM_GET_SREGS",
    "KVM_SET_SREGS",
)
"""Every ioctl request above, by name."""

IOCTL_NAMES: dict[int, str] = {globals()[name]: name for name in IOCTLS}
"""Request number -> name, for errors that say which ioctl failed."""


def ioctl_name(request: int) -> str:
    """``KVM_IOFD`` rather than ``0x4020aedb`` in error messages."""
    return IOCTL_NAMES.get(request, f"ioctl {request:#x}")


# --- arguments ---------------------------------------------------------------------
def iofd_args(addr: int, length: int, fd: int, *, pio: bool = False, deassign: bool = False,
              buffer: int | None = None) -> KvmIofd:
    """A well-formed ``struct kvm_iofd``: signal ``fd`` on guest writes inside
    [addr, addr+length); with ``buffer`` (a user address of ``length``
    bytes) KVM_IOFD_FLAG_BUFFER is set and the writes are stored there.
    A test that must send what the kernel rejects edits the result (pad,
    flags, buffer) and passes it to ``try_ioctl``."""
    flags = (
        (KVM_IOFD_FLAG_PIO if pio else 0)
        | (KVM_IOFD_FLAG_DEASSIGN if deassign else 0)
        | (KVM_IOFD_FLAG_BUFFER if buffer is not None else 0)
    )
    return KvmIofd(addr=addr, len=length, fd=fd, flags=flags, buffer=buffer or 0)


def ioeventfd_args(addr: int, length: int, fd: int, *, pio: bool = False,
                   datamatch: int | None = None, deassign: bool = False) -> KvmIoeventfd:
    """A ``struct kvm_ioeventfd``; without ``datamatch`` any value matches."""
    flags = (
        (KVM_IOEVENTFD_FLAG_PIO if pio else 0)
        | (KVM_IOEVENTFD_FLAG_DEASSIGN if deassign else 0)
        | (KVM_IOEVENTFD_FLAG_DATAMATCH if datamatch is not None else 0)
    )
    return KvmIoeventfd(datamatch=datamatch or 0, addr=addr, len=length, fd=fd, flags=flags)


def hyperv_eventfd_args(conn_id: int, fd: int, *, deassign: bool = False) -> KvmHypervEventfd:
    """A ``struct kvm_hyperv_eventfd`` binding (or unbinding) ``conn_id``."""
    flags = KVM_HYPERV_EVENTFD_DEASSIGN if deassign else 0
    return KvmHypervEventfd(conn_id=conn_id, fd=fd, flags=flags)


# --- layout description for the C probe ---------------------------------------
def _member(struct: type, name: str) -> tuple[int, type]:
    """(offset, type) of ``name`` in ``struct``, looking through anonymous
    members the way C does (``run.io`` lives inside kvm_run's union)."""
    for field_name, field_type, *_ in struct._fields_:
        if field_name == name:
            return getattr(struct, field_name).offset, field_type
    for anon in getattr(struct, "_anonymous_", ()):
        anon_type = dict((f[0], f[1]) for f in struct._fields_)[anon]
        try:
            inner_offset, inner_type = _member(anon_type, name)
        except AttributeError:
            continue
        return getattr(struct, anon).offset + inner_offset, inner_type
    raise AttributeError(f"{struct.__name__} has no member {name!r}")


def _offsetof(struct: type, path: str) -> int:
    """``offsetof(struct, a.b)`` for nested ctypes members."""
    offset = 0
    for name in path.split("."):
        member_offset, struct = _member(struct, name)
        offset += member_offset
    return offset


_STRUCTS: dict[str, type] = {
    "kvm_run": KvmRun,
    "kvm_regs": KvmRegs,
    "kvm_segment": KvmSegment,
    "kvm_dtable": KvmDtable,
    "kvm_sregs": KvmSregs,
    "kvm_userspace_memory_region": KvmUserspaceMemoryRegion,
    "kvm_ioeventfd": KvmIoeventfd,
    "kvm_iofd": KvmIofd,
    "kvm_coalesced_mmio_zone": KvmCoalescedMmioZone,
    "kvm_coalesced_mmio": KvmCoalescedMmio,
    "kvm_coalesced_mmio_ring": KvmCoalescedMmioRing,
    "kvm_pit_config": KvmPitConfig,
    "kvm_cpuid_entry2": KvmCpuidEntry2,
    "kvm_cpuid2": KvmCpuid2,
    "kvm_msr_entry": KvmMsrEntry,
    "kvm_msrs": KvmMsrs,
    "kvm_hyperv_eventfd": KvmHypervEventfd,
}

_OFFSETS: dict[str, tuple[str, ...]] = {
    "kvm_run": (
        "immediate_exit",
        "exit_reason",
        "flags",
        "cr8",
        "apic_base",
        "io",
        "io.direction",
        "io.size",
        "io.port",
        "io.count",
        "io.data_offset",
        "mmio.phys_addr",
        "mmio.data",
        "mmio.len",
        "mmio.is_write",
        "fail_entry.hardware_entry_failure_reason",
        "fail_entry.cpu",
        "hw.hardware_exit_reason",
        "internal.suberror",
        "internal.ndata",
        "internal.data",
        "kvm_valid_regs",
        "kvm_dirty_regs",
        "s",
    ),
    "kvm_regs": ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "rip", "rflags"),
    "kvm_segment": (
        "base",
        "limit",
        "selector",
        "type",
        "present",
        "dpl",
        "db",
        "s",
        "l",
        "g",
        "avl",
        "unusable",
    ),
    "kvm_dtable": ("base", "limit"),
    "kvm_sregs": (
        "cs",
        "ds",
        "es",
        "fs",
        "gs",
        "ss",
        "tr",
        "ldt",
        "gdt",
        "idt",
        "cr0",
        "cr2",
        "cr3",
        "cr4",
        "cr8",
        "efer",
        "apic_base",
        "interrupt_bitmap",
    ),
    "kvm_userspace_memory_region": (
        "slot",
        "flags",
        "guest_phys_addr",
        "memory_size",
        "userspace_addr",
    ),
    "kvm_ioeventfd": ("datamatch", "addr", "len", "fd", "flags", "pad"),
    "kvm_iofd": ("addr", "len", "fd", "flags", "pad", "buffer"),
    "kvm_coalesced_mmio_zone": ("addr", "size", "pio"),
    "kvm_coalesced_mmio": ("phys_addr", "len", "pio", "data"),
    "kvm_coalesced_mmio_ring": ("first", "last", "coalesced_mmio"),
    "kvm_pit_config": ("flags", "pad"),
    "kvm_cpuid_entry2": ("function", "index", "flags", "eax", "ebx", "ecx", "edx", "padding"),
    "kvm_cpuid2": ("nent", "padding"),
    "kvm_msr_entry": ("index", "reserved", "data"),
    "kvm_msrs": ("nmsrs", "pad"),
    "kvm_hyperv_eventfd": ("conn_id", "fd", "flags", "padding"),
}

_CONSTANTS: tuple[str, ...] = (
    "KVMIO",
    "KVM_API_VERSION",
    *IOCTLS,
    "KVM_CAP_IRQCHIP",
    "KVM_CAP_USER_MEMORY",
    "KVM_CAP_SET_TSS_ADDR",
    "KVM_CAP_NR_MEMSLOTS",
    "KVM_CAP_COALESCED_MMIO",
    "KVM_CAP_IOEVENTFD",
    "KVM_CAP_IOEVENTFD_NO_LENGTH",
    "KVM_CAP_IOEVENTFD_ANY_LENGTH",
    "KVM_CAP_IMMEDIATE_EXIT",
    "KVM_CAP_IOFD",
    "KVM_CAP_HYPERV",
    "KVM_CAP_HYPERV_EVENTFD",
    "KVM_CAP_HYPERV_CPUID",
    "KVM_HYPERV_CONN_ID_MASK",
    "KVM_HYPERV_EVENTFD_DEASSIGN",
    *sorted(n for n in EXIT_REASON_NAMES.values()),
    "KVM_EXIT_IO_IN",
    "KVM_EXIT_IO_OUT",
    "KVM_INTERNAL_ERROR_EMULATION",
    "KVM_INTERNAL_ERROR_SIMUL_EX",
    "KVM_INTERNAL_ERROR_DELIVERY_EV",
    "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON",
    "KVM_IOEVENTFD_FLAG_DATAMATCH",
    "KVM_IOEVENTFD_FLAG_PIO",
    "KVM_IOEVENTFD_FLAG_DEASSIGN",
    "KVM_IOFD_FLAG_DEASSIGN",
    "KVM_IOFD_FLAG_PIO",
    "KVM_IOFD_FLAG_BUFFER",
    "KVM_PIT_SPEAKER_DUMMY",
    "KVM_NR_INTERRUPTS",
    "SYNC_REGS_SIZE_BYTES",
)


def _build_layout() -> dict[str, int]:
    """Keys are C expressions, so a probe can ``printf`` each one verbatim."""
    layout: dict[str, int] = {name: globals()[name] for name in _CONSTANTS}
    for cname, struct in _STRUCTS.items():
        layout[f"sizeof(struct {cname})"] = ctypes.sizeof(struct)
        for path in _OFFSETS[cname]:
            layout[f"offsetof(struct {cname}, {path})"] = _offsetof(struct, path)
    return layout


LAYOUT: dict[str, int] = _build_layout()
"""C expression -> value, for every ioctl number, constant, sizeof and offset
the Python side relies on."""

IOFD_LAYOUT_KEYS: frozenset[str] = frozenset(k for k in LAYOUT if "iofd" in k.lower())
"""LAYOUT entries that only exist in headers carrying the KVM_IOFD patch."""
