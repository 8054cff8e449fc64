"""The series' own KVM selftest, run in the VM like any kselftest."""


from harness.kernel.pipeline import Kernel
from harness.vm.session import Session


def test_iofd_selftest(vm: Session, kernel: Kernel) -> None:
    binary = kernel.selftests / "x86" / "iofd_test"
    r = vm.run(str(binary), timeout=900)
    print(r.stdout, r.stderr)
    assert r.rc == 0, f"iofd_test failed (exit {r.rc}):\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    plans = [int(line[3:]) for line in lines if line.startswith("1..")]
    assert len(plans) == 1 and plans[0] > 0, "no TAP plan"
    assert not [line for line in lines if line.startswith("not ok")]
    # Every planned case reported ok: none skipped, none missing.
    assert sum(line.startswith("ok ") and "# SKIP" not in line for line in lines) == plans[0]
