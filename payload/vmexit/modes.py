"""The benchmark's modes and the exact counts each one must produce.

Pure data, imported both by the runner inside the VM and by the report on
the host, so that the host re-checks the raw numbers against the same
rules the runner enforced rather than trusting the runner's verdict.

Every guest program ends with one ``out DONE_PORT`` (see
:mod:`payload.guest.programs`), so a mode whose N writes all exit makes
N + 1 KVM_RUN returns per trial and a mode that stays in the kernel makes 1.

Every guest loop also counts its iterations itself (EDI, reported at
DONE), and every write loop makes its last write with :data:`LAST_WRITE`
instead of :data:`WRITE_VALUE`: the buffer modes must end a trial with that
byte in their buffer, and the other write modes run the same program so
that a buffer mode differs from its plain twin only in the registration.
The hypercall loops (``hc``, ``hc-floor``) count the same way and also
leave the last hypercall's status in guest memory, which must be the one
their path answers.

The scale rows (:data:`SCALE_MODES`) are iofd-pio, iofd-mmio and
ioeventfd-pio again with other registrations of the same kind on the same
bus, half below and half above the guest's address
(:func:`neighbour_addresses`); their 0-registration row is the plain mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from payload.guest.hypercall import HV_STATUS_SUCCESS, KVM_ENOSYS
from payload.guest.memmap import ELCR_PORT, MMIO_ADDR, MMIO_BASE, MMIO_LIMIT, PIO_PORT
from payload.stats import run_order as run_order  # each round's run order, re-exported

DEFAULT_ITERATIONS = 5000
DEFAULT_TRIALS = 15
"""``make bench``'s defaults: 15 interleaved rounds of 5000 writes per mode
(the README says how long that takes).  Many short rounds rather than a
few long ones: the build machine is shared, and a median over 15 rounds a
second or two apart shrugs off a burst of host load that would move every
one of 5 long trials."""

ACCESS_SIZE = 1
"""Bytes per guest write, the same in every mode: the ELCR floor
(``kernel-pio``) is a byte register, so the other modes write bytes too."""

IOFD_RANGE_LEN = 8
"""KVM_IOFD registers a range (its point over KVM_IOEVENTFD's exact
address); the guest writes at its first byte."""

WRITE_VALUE = 0x78
"""The byte every write but the last writes (PATTERN's low byte)."""
LAST_WRITE = 0xC3
"""The byte of each trial's last write, and only of that one: a buffer that
holds it after a trial holds the last value the guest wrote."""
BUFFER_RESET = 0xA5
"""What the host stores in every byte of a buffer before each trial, so that
a buffer the trial did not write (or a stale one) cannot pass the check."""
STATUS_RESET = 0xA5A5A5A5
"""What the host stores at the hypercall status word before each trial: no
hypercall answers it, so a status that was not written cannot pass."""

HC_CONN_ID = 7
"""The Hyper-V connection id the ``hc`` mode binds its eventfd to."""

SCALE_COUNTS = (10, 100, 990)
"""Other registrations on the bus for the scale rows; 0 is the plain mode.
990 + the mode's own + the in-kernel PIC's 3 (PIO) or IOAPIC (MMIO) stays
under the bus's 1000 non-ioeventfd devices."""
NEIGHBOUR_STRIDE = 2
"""The scale rows' other registrations are 1 byte (1 port) long and this far
apart: distinct, never adjacent, and as many as fit on either side."""
RESERVED = {"pio": ((0, 0x100), (ELCR_PORT, 2)), "mmio": ()}
"""Address spans (start, length) no neighbour may take: the legacy ports
(the PIC, DONE_PORT) and the ELCR that kernel-pio writes."""
BUS_SPAN = {"pio": (0, 0x10000), "mmio": (MMIO_BASE, MMIO_LIMIT)}
"""Where on each bus the neighbours may go: every port; on MMIO the part of
segment 0 with no memory slot, where the guest's own address is."""


@dataclass(frozen=True)
class Mode:
    """One row of the table."""

    name: str
    path: str
    """``userspace``, ``iofd``, ``ioeventfd``, ``kernel``, ``cpuid``,
    ``hyperv`` (a Hyper-V SIGNAL_EVENT hypercall bound to an eventfd with
    KVM_HYPERV_EVENTFD) or ``hypercall`` (a KVM hypercall KVM refuses)."""
    bus: str | None
    """``pio``, ``mmio``, or None for CPUID and the hypercalls."""
    seed_name: str | None
    """The 2009 posting's name for the same path, if it had one."""
    what: str
    buffered: bool = False
    """KVM_IOFD with KVM_IOFD_FLAG_BUFFER: each write is also stored in a
    user buffer, which must hold :data:`LAST_WRITE` after every trial."""
    ioeventfd_len: int = ACCESS_SIZE
    """KVM_IOEVENTFD's ``len``: the access size, or 0 (any length, the
    FAST_MMIO form virtio notify uses)."""
    others: int = 0
    """Other registrations of the same kind on the same bus (scale rows)."""
    base: str | None = None
    """For a scale row, the plain mode it is the same as but for ``others``."""

    @property
    def hypercall(self) -> bool:
        """The guest loop is a hypercall loop (protected mode)."""
        return self.path in ("hyperv", "hypercall")

    @property
    def expected_status(self) -> int | None:
        """The last hypercall's status (u32) the guest must have stored, or
        None for a mode that makes no hypercall: SUCCESS where the connection
        is bound, -KVM_ENOSYS for the number KVM does not know."""
        return {"hyperv": HV_STATUS_SUCCESS,
                "hypercall": -KVM_ENOSYS % (1 << 32)}.get(self.path)

    def guest_count(self, done_value: int) -> int:
        """The iterations the guest counted, from its DONE value: every
        loop counts up from 0 in EDI and reports it at DONE."""
        return done_value

    @property
    def registration(self) -> str | None:
        """The ioctl that registers (and must deassign) the mode's eventfd, if any."""
        return {"iofd": "KVM_IOFD", "ioeventfd": "KVM_IOEVENTFD",
                "hyperv": "KVM_HYPERV_EVENTFD"}.get(self.path)

    @property
    def other_registration(self) -> str | None:
        """The ioctl that must *not* find the mode's registration (the path
        proof); None where no other ioctl names the same thing (a Hyper-V
        connection id has no address)."""
        return {"KVM_IOFD": "KVM_IOEVENTFD", "KVM_IOEVENTFD": "KVM_IOFD"}.get(self.registration or "")

    @property
    def final_buffer(self) -> bytes | None:
        """What the buffer must hold after a trial: the last write at offset 0,
        the reset pattern in the bytes no write touched; None without a buffer."""
        if not self.buffered:
            return None
        return bytes([LAST_WRITE]) + bytes([BUFFER_RESET]) * (IOFD_RANGE_LEN - ACCESS_SIZE)

    @property
    def exits_to_userspace(self) -> bool:
        """Every guest write is a KVM_RUN return (the device model runs in userspace)."""
        return self.path == "userspace"

    @property
    def uses_doorbell(self) -> bool:
        """Something rings the doorbell once per write: the ioctl or the eventfd."""
        return self.path in ("userspace", "iofd", "ioeventfd", "hyperv")

    def expected_kvm_runs(self, n: int) -> int:
        """KVM_RUN returns per trial of ``n`` writes (the final DONE_PORT exit included)."""
        return n + 1 if self.exits_to_userspace else 1

    def expected_doorbell(self, n: int) -> int:
        """What the doorbell must read after a trial; 0 where nothing rings it."""
        return n if self.uses_doorbell else 0

    def expected_rings(self, n: int) -> int:
        """Ring ioctls the native loop must have issued."""
        return n if self.exits_to_userspace else 0


MODES: tuple[Mode, ...] = (
    Mode("userspace-mmio", "userspace", "mmio", "qemu-mmio",
         "MMIO write exits to userspace (KVM_EXIT_MMIO); the loop rings the doorbell by ioctl"),
    Mode("userspace-pio", "userspace", "pio", "qemu-pio",
         "port write exits to userspace (KVM_EXIT_IO); the loop rings the doorbell by ioctl"),
    Mode("iofd-mmio", "iofd", "mmio", "iofd-mmio",
         "KVM_IOFD on an 8-byte MMIO range signals an eventfd the doorbell is attached to"),
    Mode("iofd-pio", "iofd", "pio", "iofd-pio",
         "KVM_IOFD on an 8-port range signals an eventfd the doorbell is attached to"),
    Mode("iofd-buffer-mmio", "iofd", "mmio", None,
         "KVM_IOFD with KVM_IOFD_FLAG_BUFFER: each write also stored in an 8-byte user buffer",
         buffered=True),
    Mode("iofd-buffer-pio", "iofd", "pio", None,
         "KVM_IOFD with KVM_IOFD_FLAG_BUFFER on an 8-port range, values kept in a user buffer",
         buffered=True),
    Mode("ioeventfd-mmio", "ioeventfd", "mmio", None,
         "upstream KVM_IOEVENTFD, no datamatch, same eventfd and doorbell wiring"),
    Mode("ioeventfd-mmio-len0", "ioeventfd", "mmio", None,
         "upstream zero-length KVM_IOEVENTFD (any access size; FAST_MMIO on VMX, virtio's notify)",
         ioeventfd_len=0),
    Mode("ioeventfd-pio", "ioeventfd", "pio", None,
         "upstream KVM_IOEVENTFD, no datamatch, same eventfd and doorbell wiring"),
    Mode("kernel-pio", "kernel", "pio", None,
         "write to port 0x4d0 (PIC ELCR) emulated by the in-kernel irqchip: the floor"),
    Mode("cpuid", "cpuid", None, None,
         "CPUID, an exit KVM always handles in the kernel: reference"),
    Mode("hc", "hyperv", None, "iofd-hc",
         "fast Hyper-V SIGNAL_EVENT hypercall whose connection KVM_HYPERV_EVENTFD binds to "
         "the eventfd the doorbell is attached to"),
    Mode("hc-floor", "hypercall", None, None,
         "KVM hypercall with a number KVM does not know, answered -KVM_ENOSYS in the kernel: "
         "the hypercall floor"),
)
"""The main table's rows, in its order."""

SCALED = ("iofd-pio", "iofd-mmio", "ioeventfd-pio")
"""The modes the scale rows repeat with other registrations on their bus."""


def scale_name(base: str, others: int) -> str:
    """``iofd-pio+990``: ``base`` with ``others`` other registrations."""
    return f"{base}+{others}"


def _scaled(base: Mode, others: int) -> Mode:
    kind = "iofds" if base.path == "iofd" else "ioeventfds"
    return Mode(scale_name(base.name, others), base.path, base.bus, None,
                f"{base.name} with {others} other 1-byte {kind} on the {base.bus} bus, "
                "half below and half above its address",
                ioeventfd_len=base.ioeventfd_len, others=others, base=base.name)


SCALE_MODES: tuple[Mode, ...] = tuple(
    _scaled(next(m for m in MODES if m.name == name), k) for name in SCALED for k in SCALE_COUNTS)
"""The scale rows: each of :data:`SCALED` with each of :data:`SCALE_COUNTS`."""

ALL_MODES: tuple[Mode, ...] = MODES + SCALE_MODES
BY_NAME: dict[str, Mode] = {m.name: m for m in ALL_MODES}
NAMES: tuple[str, ...] = tuple(m.name for m in MODES)
"""The main table's modes."""
SCALE_NAMES: tuple[str, ...] = tuple(m.name for m in SCALE_MODES)
ALL_NAMES: tuple[str, ...] = NAMES + SCALE_NAMES
"""What ``make bench`` runs: every mode and every scale row."""


def get(name: str) -> Mode:
    """The mode called ``name``; ValueError naming the valid ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; modes are {', '.join(ALL_NAMES)}") from None


def hot_address(mode: Mode) -> int:
    """The port or MMIO address the mode's guest writes (its first byte)."""
    return PIO_PORT if mode.bus == "pio" else MMIO_ADDR


def _reserved(bus: str, addr: int) -> bool:
    return any(start <= addr < start + length for start, length in RESERVED[bus])


def neighbour_addresses(bus: str, hot: int, count: int) -> list[int]:
    """Where a scale row's ``count`` other 1-byte registrations go.

    Half (rounded down) below ``hot``, the rest above the hot range of
    :data:`IOFD_RANGE_LEN` bytes (the widest registration a mode makes
    there), :data:`NEIGHBOUR_STRIDE` apart and outward from it, skipping
    :data:`RESERVED`: so the hot entry sits in the middle of the sorted bus
    and every lookup for it searches past both halves.  ValueError when the
    bus has no room.
    """
    lo, hi = BUS_SPAN[bus]
    below, above = count // 2, count - count // 2
    out: list[int] = []
    for want, addr, step in ((below, hot - NEIGHBOUR_STRIDE, -NEIGHBOUR_STRIDE),
                             (above, hot + IOFD_RANGE_LEN + 1, NEIGHBOUR_STRIDE)):
        side: list[int] = []
        while len(side) < want:
            if not lo <= addr < hi:
                raise ValueError(f"no room for {count} registrations around {hot:#x} on {bus}")
            if not _reserved(bus, addr):
                side.append(addr)
            addr += step
        out += side
    return out


def runner_timeout(n: int, trials: int) -> float:
    """Seconds the runner may take: 200 us per write (4x the slowest mode
    under TCG) for every trial and warm-up of every row, plus start-up, the
    scale rows' registrations and the doorbell array."""
    return 300.0 + (trials + 1) * len(ALL_MODES) * n * 200e-6

