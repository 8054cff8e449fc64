"""The kernel's own KVM selftests: nothing that passed on the base may break.

The baseline (tests/vm/kvm-selftests-baseline.txt) was recorded with the
same runner on the unpatched base kernel in this nested TCG environment:
`python -m harness kselftests --baseline`.  How a run is planned, bounded
and judged is in :mod:`harness.kselftest`.
"""

from collections.abc import Callable

from harness import flavours, kselftest
from harness.kernel.pipeline import Kernel
from harness.vm.session import Session

# The whole run, inside the VM: about three times what it took on a quiet
# host (see the README), and still inside CI's 90 minutes with the build.
BUDGET = 2700


def test_upstream_kvm_selftests_do_not_regress(vm: Session, kernel: Kernel,
                                               summary: Callable[[str], None]) -> None:
    slowdown = flavours.get(kernel.flavour).limit_multiplier
    verdict = kselftest.verdict(vm, kernel.kselftests, kselftest.load(), BUDGET * slowdown,
                                slowdown, kselftest.load_flaky())
    summary(verdict.summary(kernel.release, 5))
    error = verdict.error()
    assert error is None, str(error)
    assert verdict.run.results.get("iofd_test") == "pass", "the series' own iofd_test did not pass"
