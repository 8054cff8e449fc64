"""The benchmark's modes and the exact counts each one must produce.

Pure data, imported both by the runner inside the VM and by the report on
the host, so that the host re-checks the raw numbers against the same
rules the runner enforced rather than trusting the runner's verdict.

Every guest program ends with one ``out DONE_PORT`` (see
:mod:`payload.guest.programs`), so a mode whose N writes all exit makes
N + 1 KVM_RUN returns per trial and a mode that stays in the kernel makes 1.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Mode:
    """One row of the table."""

    name: str
    path: str
    """``userspace``, ``iofd``, ``ioeventfd``, ``kernel`` or ``cpuid``."""
    bus: str | None
    """``pio``, ``mmio``, or None for CPUID."""
    seed_name: str | None
    """The 2009 posting's name for the same path, if it had one."""
    what: str

    @property
    def exits_to_userspace(self) -> bool:
        """Every guest write is a KVM_RUN return (the device model runs in userspace)."""
        return self.path == "userspace"

    @property
    def uses_doorbell(self) -> bool:
        """Something rings the doorbell once per write: the ioctl or the eventfd."""
        return self.path in ("userspace", "iofd", "ioeventfd")

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
    Mode("ioeventfd-mmio", "ioeventfd", "mmio", None,
         "upstream KVM_IOEVENTFD, no datamatch, same eventfd and doorbell wiring"),
    Mode("ioeventfd-pio", "ioeventfd", "pio", None,
         "upstream KVM_IOEVENTFD, no datamatch, same eventfd and doorbell wiring"),
    Mode("kernel-pio", "kernel", "pio", None,
         "write to port 0x4d0 (PIC ELCR) emulated by the in-kernel irqchip: the floor"),
    Mode("cpuid", "cpuid", None, None,
         "CPUID, an exit KVM always handles in the kernel: reference"),
)

BY_NAME: dict[str, Mode] = {m.name: m for m in MODES}
NAMES: tuple[str, ...] = tuple(m.name for m in MODES)


def get(name: str) -> Mode:
    """The mode called ``name``; ValueError naming the valid ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; modes are {', '.join(NAMES)}") from None


def runner_timeout(n: int, trials: int) -> float:
    """Seconds the runner may take: 200 us per write (4x the slowest mode
    under TCG) for every trial and warm-up, plus start-up."""
    return 120.0 + (trials + 1) * len(MODES) * n * 200e-6

