"""The QEMU setups of the NVMe table, one row each.

Which QEMU binary and which ``-device nvme`` options make each row is
data shared by the L1 runner (which starts them) and the host's report
(which names them); nothing else about a row lives elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    name: str
    qemu: str
    """``debian`` (the distribution's binary) or ``patched`` (qemu-patch/)."""
    options: str
    """Extra ``-device nvme`` properties, comma-separated (may be empty)."""
    meaning: str


CONFIGS: tuple[Config, ...] = (
    Config("S0", "debian", "", "today: shadow doorbells used by Linux, no ioeventfd"),
    Config("S1", "debian", "ioeventfd=on", "today's best: shadow doorbells plus ioeventfds"),
    Config("P0", "patched", "x-dbbuf=off", "a guest without shadow doorbells, today"),
    Config("P1", "patched", "x-dbbuf=off,x-iofd=on", "the same guest with KVM_IOFD"),
    Config("P2", "patched", "ioeventfd=on", "the patched build behaving as S1 (control)"),
)
BY_NAME = {c.name: c for c in CONFIGS}
QDS = (1, 4, 16)


def lookup(names: str) -> list[Config]:
    """The configurations named in a comma list, in that order; a
    ValueError names an unknown one."""
    out = []
    for n in (s.strip() for s in names.split(",") if s.strip()):
        if n not in BY_NAME:
            raise ValueError(f"unknown NVMe configuration {n!r} (known: {', '.join(BY_NAME)})")
        out.append(BY_NAME[n])
    if not out:
        raise ValueError("no NVMe configuration named")
    return out


def device_arg(config: Config, drive: str) -> str:
    """The ``-device`` argument for *config* on the drive id *drive*."""
    props = f"nvme,serial=iofd0,drive={drive}"
    return f"{props},{config.options}" if config.options else props
