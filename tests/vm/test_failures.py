"""What the user sees when the guest goes wrong: a clear error, QEMU gone.

The hang and panic cases each boot a VM of their own (the shared one must
survive); the splat case uses the shared one, since a splat leaves the
guest running.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kernel.pipeline import Kernel
from harness.settings import Settings
from harness.vm import accel, session
from harness.vm.boot import options_for
from harness.vm.session import Session, VmError


@pytest.fixture
def own_vm(kernel: Kernel, settings: Settings) -> Iterator[Session]:
    s = session.boot(options_for(settings, accel.detect(settings.accel), []), kernel, kvm=False)
    s.start()
    yield s
    s.close()


def qemu_alive(xfer: Path) -> bool:
    """Is a QEMU that shares *xfer* with its guest still running?"""
    return subprocess.run(["pgrep", "-f", str(xfer)], capture_output=True).returncode == 0


def test_hung_guest_times_out_and_qemu_is_killed(own_vm: Session) -> None:
    xfer = own_vm.xfer
    assert qemu_alive(xfer)
    with pytest.raises(VmError, match="did not finish within 3 s; QEMU was killed"):
        own_vm.run("sleep 600", timeout=3)
    assert not qemu_alive(xfer)


def test_guest_panic_is_shown(own_vm: Session) -> None:
    with pytest.raises(VmError, match="panicked") as e:
        own_vm.run("echo c > /proc/sysrq-trigger", timeout=120)
    assert "sysrq triggered crash" in str(e.value)
    assert not qemu_alive(own_vm.xfer)


def test_splat_fails_the_step_and_is_shown(vm: Session) -> None:
    fake = "WARNING: CPU: 0 PID: 1 at virt/kvm/fake.c:1 fake_splat+0x0/0x10"
    with pytest.raises(VmError, match="splatted during") as e:
        vm.run(f"echo '<4>{fake}' > /dev/kmsg")
    assert fake in str(e.value)
    # The guest itself is fine, and the next step starts clean.
    assert vm.run("true").rc == 0


def test_a_stopped_shared_vm_boots_again_for_the_next_test(shared_vm: Session) -> None:
    """One test's hang must not fail every test after it (as it once did)."""
    first_log = shared_vm.console_log
    with pytest.raises(VmError, match="QEMU was killed"):
        shared_vm.run("sleep 600", timeout=3)
    assert not shared_vm.running
    with pytest.raises(VmError, match="the VM is not running"):
        shared_vm.run("true")
    shared_vm.start()  # what the vm fixture does for the next test
    assert shared_vm.running and shared_vm.boots == 2
    assert shared_vm.console_log != first_log and first_log.stat().st_size > 0, "the first log was lost"
    # The setup commands ran again: KVM is there for the tests that follow.
    assert shared_vm.run("grep -qE '^kvm_(amd|intel) ' /proc/modules").rc == 0
