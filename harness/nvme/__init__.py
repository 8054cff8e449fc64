"""make nvme's host side: the L2 guest (kernel, busybox, static fio), its inputs, runs and report."""
