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


def test_the_series_error_paths_count_as_ours() -> None:
    """A leak on a refused KVM_CREATE_PIT2, KVM_CREATE_IRQCHIP or coalesced
    zone: paths the series changed, so they fail the run."""
    for fn in ("kvm_create_pit", "kvm_pic_init", "kvm_vm_ioctl_register_coalesced_mmio"):
        dump = DUMP.replace("kvm_assign_iofd", fn).replace("acpi_os_allocate", "acpi_x")
        assert [fn in b for b in kmemleak.ours(dump)] == [True], fn


def test_empty_dump() -> None:
    assert kmemleak.ours("") == []
