"""What L1's KVM counted for the L2 guest over one fio job.

KVM's VM statistics in debugfs (``/sys/kernel/debug/kvm/<stat>``, each the
sum over the VMs that exist; the L2 QEMU's is the only one): ``exits``
(every exit from L2 to L1's KVM), ``mmio_exits``, ``io_exits``,
``signal_exits`` and the rest, for the record.

The userspace exits are read from the same statistics:

- ``mmio_exits`` counts exactly the emulated MMIO accesses KVM hands to
  userspace (``KVM_EXIT_MMIO``; x86.c increments it where it sets
  ``mmio_needed``), so a doorbell write that took an exit is counted;
- ``io_exits`` counts every port I/O intercept, handled in the kernel or
  not, and ``signal_exits`` the returns for a pending signal.

Their sum is the job's userspace exits, exact for MMIO and an upper bound
for port I/O (the L2 guest does almost none during a job).

The ``kvm:kvm_userspace_exit`` tracepoint would count each exit by reason,
but with it enabled L1 under TCG's nested SVM went idle for good at the
start of the second L2 boot, every time (no timer fired in L1 again); with
the statistics alone, three boots in a row finished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEBUGFS = Path("/sys/kernel/debug/kvm")


class CounterError(RuntimeError):
    """A counter this run needs is not there."""


def _mount(path: Path, fstype: str) -> None:
    if not path.is_dir() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        if os.system(f"mount -t {fstype} nodev {path} 2>/dev/null") != 0 and not any(path.iterdir()):
            raise CounterError(f"cannot mount {fstype} on {path}")


def kvm_stats() -> dict[str, int]:
    """Every top-level KVM statistic in debugfs, by name."""
    if not DEBUGFS.is_dir():
        _mount(Path("/sys/kernel/debug"), "debugfs")
    if not DEBUGFS.is_dir():
        raise CounterError(f"{DEBUGFS} is missing: is kvm loaded and debugfs mounted?")
    out = {}
    for f in DEBUGFS.iterdir():
        if f.is_file():
            try:
                out[f.name] = int(f.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # not a counter (e.g. a histogram)
    if "exits" not in out:
        raise CounterError(f"{DEBUGFS} has no 'exits' counter")
    return out


USERSPACE = {"KVM_EXIT_MMIO": "mmio_exits", "KVM_EXIT_IO": "io_exits",
             "KVM_EXIT_INTR": "signal_exits"}
"""Exit reasons to userspace and the statistic that counts each (see above)."""


@dataclass
class Window:
    """One job's counting window: open with :meth:`start`, close with
    :meth:`stop`, which returns the deltas."""

    before: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.before = kvm_stats()

    def stop(self) -> dict[str, object]:
        """The window's deltas: ``stats`` (every debugfs counter that moved),
        ``userspace_by_reason`` (:data:`USERSPACE`) and their sum
        ``userspace_exits``."""
        after = kvm_stats()
        moved = {k: after[k] - self.before.get(k, 0) for k in after
                 if after[k] != self.before.get(k, 0)}
        reasons = {r: moved.get(stat, 0) for r, stat in USERSPACE.items()}
        return {"stats": moved, "userspace_exits": sum(reasons.values()),
                "userspace_by_reason": reasons}
