"""Which kmemleak reports fail the debug run."""

from tests.support import kmemleak

DUMP = """\
unreferenced object 0xffff888100a1b000 (size 64):
  comm "python3", pid 220, jiffies 4294893296
  backtrace (crc 0):
    kmalloc_trace+0x25/0x30
    kvm_assign_iofd+0x61/0x2d0 [kvm]
    kvm_vm_ioctl+0x5c4/0x1a60 [kvm]
unreferenced object 0xffff888100a1c000 (size 32):
  comm "swapper/0", pid 1, jiffies 4294892000
  backtrace (crc 0):
    kmalloc_trace+0x25/0x30
    acpi_os_allocate+0x10/0x20
"""


def test_splits_and_filters() -> None:
    assert len(kmemleak.reports(DUMP)) == 2
    (ours,) = kmemleak.ours(DUMP)
    assert "kvm_assign_iofd" in ours


def test_empty_dump() -> None:
    assert kmemleak.ours("") == []
