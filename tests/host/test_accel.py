"""KVM vs TCG: the decision, with every probe faked."""

from pathlib import Path

import pytest

from harness.vm import accel


def probe(value: bool, calls: list[str], name: str):
    def f() -> bool:
        calls.append(name)
        return value
    return f


@pytest.mark.parametrize(
    ("dev", "virt", "runs", "want"),
    [
        (True, True, True, "kvm"),     # a nested-virt CI runner
        (True, False, True, "tcg"),    # this machine: /dev/kvm, but no vmx/svm
        (True, True, False, "tcg"),    # /dev/kvm belongs to a hypervisor QEMU can't use
        (False, True, True, "tcg"),    # no /dev/kvm at all
    ],
)
def test_decide(dev: bool, virt: bool, runs: bool, want: str) -> None:
    calls: list[str] = []
    d = accel.decide(probe(dev, calls, "dev"), probe(virt, calls, "virt"),
                     probe(runs, calls, "runs"))
    assert d.accel == want
    assert d.reason
    # The probe guest (seconds) only runs when the cheap checks pass.
    assert ("runs" in calls) == (dev and virt)


def test_host_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme svm npt\n")
    assert accel.host_has_virt(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme hypervisor\n")
    assert not accel.host_has_virt(cpuinfo)


def test_missing_device(tmp_path: Path) -> None:
    assert not accel.kvm_usable(tmp_path / "kvm")


def test_forced_skips_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(*a: object) -> bool:
        raise AssertionError("probed although forced")

    for probe in ("kvm_usable", "host_has_virt", "guest_runs"):
        monkeypatch.setattr(accel, probe, no_probe)
    d = accel.detect("tcg")
    assert (d.accel, d.reason) == ("tcg", "forced by KVM_IOFD_ACCEL")
