"""QEMU's NVMe controller on KVM_IOFD, measured in the test VM (L1).

The L1 side of ``make nvme``: :mod:`configs` names the QEMU setups the
table compares, :mod:`counters` reads what L1's KVM counted for the L2
guest, :mod:`l2` boots one L2 Linux and steps it through its fio jobs,
and :mod:`runner` runs the table and writes its raw JSON.  The L2 guest's
initramfs (busybox and a static fio) and the patched QEMU are built on the
host (``harness.nvme.guest``, ``harness.qemu``).
"""
