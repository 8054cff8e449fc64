"""The foundation: the VM runs the patched kernel and can run KVM guests."""

from harness.kernel.pipeline import Kernel
from harness.vm.session import Session


def test_booted_kernel_is_the_patched_one(vm: Session, kernel: Kernel) -> None:
    r = vm.run("uname -r")
    assert r.rc == 0
    assert r.stdout.strip() == kernel.release
    assert f"-iofd-{kernel.series}" in r.stdout


def test_dev_kvm_exists(vm: Session) -> None:
    assert vm.run("test -c /dev/kvm").rc == 0


def test_kvm_vendor_module_has_nested_paging(vm: Session) -> None:
    r = vm.run("cat /sys/module/kvm_amd/parameters/npt 2>/dev/null || "
                  "cat /sys/module/kvm_intel/parameters/ept")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() in ("Y", "1"), r.stdout


def test_kvm_reports_kvm_iofd(vm: Session, python: str) -> None:
    r = vm.run(f"{python} -c 'import fcntl, os; from payload.kvm import uapi; "
                  "fd = os.open(\"/dev/kvm\", os.O_RDWR); "
                  "print(fcntl.ioctl(fd, uapi.KVM_CHECK_EXTENSION, uapi.KVM_CAP_IOFD))'")
    assert r.rc == 0, r.stderr
    assert int(r.stdout) > 0, "KVM_CAP_IOFD not reported by the patched kernel"
