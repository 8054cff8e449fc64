"""``make smoke``: boot, check the kernel and KVM, load the doorbell."""

from harness.kernel.pipeline import Kernel
from harness.progress import say
from harness.vm import session
from harness.vm.boot import BootOptions


def checks(kernel: Kernel) -> list[tuple[str, str]]:
    """(name, guest command) pairs; each must exit 0."""
    return [
        ("kernel", "uname -r"),
        ("kvm", "ls -l /dev/kvm && cat /sys/module/kvm_amd/parameters/npt "
                "/sys/module/kvm_amd/parameters/nested 2>/dev/null || "
                "cat /sys/module/kvm_intel/parameters/ept"),
        ("doorbell", f"insmod {kernel.doorbell_ko} && ls -l /dev/doorbell && rmmod doorbell"),
    ]


def run(kernel: Kernel, opts: BootOptions) -> int:
    """The exit status: 0 when every check passed, 1 at the first that did not."""
    with session.boot(opts, kernel) as vm:
        for name, cmd in checks(kernel):
            r = vm.run(cmd)
            status = "ok" if r.rc == 0 else f"FAILED (exit {r.rc})"
            say(f"smoke {name}: {status}: {(r.stdout + r.stderr).strip()}")
            if r.rc:
                return 1
    return 0
