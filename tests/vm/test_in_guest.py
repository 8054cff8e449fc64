"""Run each tests/payload/ file with pytest inside the VM, one file per test here.

Those tests drive /dev/kvm and /dev/doorbell directly, so they must run in
the guest; the guest sees this checkout and its venv at the same paths.  A
test skipped inside the VM fails here: the VM is exactly the environment in
which every one of them must run.
"""

from pathlib import Path

import pytest

from harness import junit, paths
from harness.kernel.prepare import Kernel
from harness.vm.session import Session

GUEST_TESTS = sorted((paths.REPO / "tests" / "guest").glob("test_*.py"))


@pytest.mark.parametrize("path", GUEST_TESTS, ids=[p.name for p in GUEST_TESTS])
def test_guest_file(guest: Session, kernel: Kernel, python: str, path: Path) -> None:
    report = paths.RESULTS / f"junit-guest-{path.stem}.xml"
    report.unlink(missing_ok=True)
    guest.run(f"grep -q '^doorbell ' /proc/modules || insmod {kernel.doorbell_ko}")
    r = guest.run(
        f"{python} -m pytest -q -rs -p no:cacheprovider --junitxml={report} {path}",
        timeout=1800,
        env={"DOORBELL_KO": kernel.doorbell_ko, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    print(r.stdout[-30000:], r.stderr[-5000:])
    assert report.exists(), f"pytest in the guest wrote no report (exit {r.rc}):\n{r.stderr}"
    counts = junit.counts(report)
    assert r.rc == 0 and counts["failures"] == counts["errors"] == 0, \
        f"{path.name} failed in the guest: {counts}\n{r.stdout[-5000:]}"
    assert counts["tests"] > 0, f"{path.name} ran no test in the guest"
    assert counts["skipped"] == 0, f"{path.name}: tests skipped in the guest: {counts}\n{r.stdout}"
