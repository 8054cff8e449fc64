"""The splat detector: real report headers match, ordinary boot lines don't."""

import pytest

from payload import splat

REPORTS = {
    "BUG": "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "WARNING": "WARNING: CPU: 0 PID: 123 at virt/kvm/eventfd.c:42 iofd_write+0x1/0x2",
    "Oops": "Oops: 0002 [#1] PREEMPT SMP NOPTI",
    "KASAN": "BUG: KASAN: slab-use-after-free in iofd_write+0x2a/0x40",
    "lockdep": "WARNING: possible circular locking dependency detected",
    "RCU": "WARNING: suspicious RCU usage",
    "sleep in atomic": "BUG: sleeping function called from invalid context at mm/slab.c:1",
    "panic": "Kernel panic - not syncing: Fatal exception",
    "kmemleak": "kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
}

CLEAN = """\
[    0.000000] Linux version 6.12.117-iofd-1234abcd (root@host) (gcc 12.2.0)
[    0.412345] kvm_amd: Nested Virtualization enabled
[    0.412346] kvm_amd: Nested Paging enabled
[    1.000000] doorbell: loaded
[    1.1] ACPI: _OSC evaluation for CPUs failed, trying _PDC
"""


@pytest.mark.parametrize("line", REPORTS.values(), ids=REPORTS.keys())
def test_reports_are_found(line: str) -> None:
    found = splat.find(CLEAN + "[    2.0] " + line + "\n[    2.1] Call Trace:\n")
    assert found, line
    assert line in found[0][1]
    assert "Call Trace:" in found[0][1]


def test_clean_log_has_no_splat() -> None:
    assert splat.find(CLEAN) == []


def test_one_report_is_reported_once() -> None:
    log = REPORTS["WARNING"] + "\n" + "\n".join(f"  frame {i}" for i in range(10))
    assert len(splat.find(log)) == 1


def test_describe_names_the_kind() -> None:
    text = splat.describe(splat.find(REPORTS["KASAN"]))
    assert text.startswith("--- ")
    assert "KASAN" in text
