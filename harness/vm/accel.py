"""Choosing between KVM and TCG for the test VM.

``/dev/kvm`` existing proves little: on some CI hosts it belongs to a
hypervisor that cannot run a normal QEMU guest, and without VMX or SVM in
the host CPU the VM could not run KVM itself, which is the whole point (the
tests run L2 guests inside it).  So KVM is chosen only when the device is
usable, the host CPU has VMX or SVM, and a probe guest really runs with
it.  Otherwise TCG with ``-cpu max``, which exposes AMD SVM with nested
paging to the guest.
"""

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Decision:
    accel: str      # "kvm" or "tcg"
    reason: str


def decide(kvm_usable: Callable[[], bool], host_has_virt: Callable[[], bool],
           guest_runs: Callable[[], bool]) -> Decision:
    """The decision itself, with each probe injected (and run lazily, cheapest first)."""
    if not kvm_usable():
        return Decision("tcg", "/dev/kvm is missing or not accessible")
    if not host_has_virt():
        return Decision("tcg", "host CPU has no vmx/svm flag: the VM could not run KVM itself")
    if not guest_runs():
        return Decision("tcg", "a probe guest did not run under KVM")
    return Decision("kvm", "/dev/kvm runs guests and the host CPU has vmx/svm")


def kvm_usable(dev: Path = Path("/dev/kvm")) -> bool:
    return dev.exists() and os.access(dev, os.R_OK | os.W_OK)


def host_has_virt(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return "vmx" in flags or "svm" in flags
    return False


def guest_runs(timeout: float = 15.0) -> bool:
    """Boot SeaBIOS under KVM and wait for its banner on the debug console.

    A QEMU that cannot run KVM guests here aborts (e.g. "failed to set MSR
    0x10a") or never prints; one that can prints within a second or two.
    """
    cmd = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-M", "q35", "-nodefaults",
           "-display", "none", "-monitor", "none", "-no-reboot",
           "-chardev", "stdio,id=dbg", "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return False
    deadline = time.monotonic() + timeout
    seen = b""
    try:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and proc.poll() is None:
            chunk = proc.stdout.read() or b""
            seen += chunk
            if b"SeaBIOS" in seen:
                return True
            time.sleep(0.1)
        return False
    finally:
        proc.kill()
        proc.wait()


def detect(forced: str | None = None) -> Decision:
    """*forced* (``KVM_IOFD_ACCEL``, see :mod:`harness.settings`) decides;
    otherwise probe."""
    if forced:
        return Decision(forced, "forced by KVM_IOFD_ACCEL")
    return decide(kvm_usable, host_has_virt, guest_runs)
