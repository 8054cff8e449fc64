"""kmemleak on the debug kernel: leaks that point at the code under test.

A scan reports every unreferenced object with its allocation stack; only
those whose stack mentions one of our subsystems fail the run, since the
rest of the kernel has known, unrelated reports.
"""

import re

from harness.vm.session import Session

DEBUGFS = "/sys/kernel/debug/kmemleak"
OURS = re.compile(r"iofd|eventfd|kvm_io_bus|doorbell"
                  # the error paths the series changes: the PIT, the PIC, coalesced zones
                  r"|kvm_create_pit|kvm_pic_init|kvm_vm_ioctl_register_coalesced_mmio"
                  r"|coalesced_mmio")


def reports(text: str) -> list[str]:
    """Split a kmemleak dump into one block per unreferenced object."""
    blocks = re.split(r"(?m)^(?=unreferenced object )", text)
    return [b.strip() for b in blocks if b.startswith("unreferenced object")]


def ours(text: str) -> list[str]:
    return [b for b in reports(text) if OURS.search(b)]


def scan(session: Session) -> list[str]:
    """Scan twice (kmemleak only reports an object seen unreferenced twice) and filter."""
    r = session.run(f"mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug; "
                    f"echo scan > {DEBUGFS}; sleep 1; echo scan > {DEBUGFS}; cat {DEBUGFS}",
                    timeout=600)
    if r.rc != 0:
        raise RuntimeError(f"kmemleak scan failed: {r.stderr.strip()}")
    return ours(r.stdout)
