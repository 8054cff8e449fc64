"""Run each tests/payload/ file with pytest inside the VM, one file per test here.

Those tests drive /dev/kvm and /dev/doorbell directly, so they must run in
the guest; the guest sees this checkout and its venv at the same paths.  A
test skipped inside the VM fails here: the VM is exactly the environment in
which every one of them must run.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import junit, paths
from harness.kernel.pipeline import Kernel
from harness.machine import run_pytest
from harness.vm.session import Session, load_doorbell

PAYLOAD_TESTS = sorted((paths.REPO / "tests" / "payload").glob("test_*.py"))


@pytest.mark.parametrize("path", PAYLOAD_TESTS, ids=[p.name for p in PAYLOAD_TESTS])
def test_payload_file(vm: Session, kernel: Kernel, path: Path,
                      summary: Callable[[str], None]) -> None:
    report = paths.RESULTS / f"junit-payload-{path.stem}.xml"
    log = report.with_suffix(".log")
    report.unlink(missing_ok=True)
    vm.run(load_doorbell(kernel))
    done = run_pytest(vm, [str(path)], kernel.doorbell_ko, report, log, timeout=1800)
    print(done.log[-35000:])
    for line in junit.summaries(report):  # what the file measured (record_property)
        summary(f"{path.name}: {line}")
    assert junit.clean(done.counts), \
        f"{path.name} did not run clean in the guest: {done.counts} (log: {log})\n{done.log[-5000:]}"
