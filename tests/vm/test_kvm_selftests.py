"""The kernel's own KVM selftests: nothing that passed on the base may break,
and the series' own selftests pass.

The run is judged against the baseline of its own environment (accelerator,
the VM's virtualization extension, kernel flavour):
harness/kselftest/kvm-selftests-baseline-ENVIRONMENT.txt, recorded with the
same runner on the unpatched base.  When this environment has none, the
test records it first: it stops the shared VM, builds the base in its own
worktree, boots it, runs every selftest there, writes the file (commit
it), and boots the shared VM again.  How a run is planned, bounded and
judged is in :mod:`harness.kselftest.run`.
"""

from collections.abc import Callable
from pathlib import Path

from harness.kernel.pipeline import Kernel
from harness.kselftest import run
from harness.kselftest.baseline import Environment
from harness.settings import Settings
from harness.vm.session import Session

# The whole run, inside the VM: about three times what it took on a quiet
# host (see the README), and still inside CI's 90 minutes with the build.
BUDGET = 2700


def test_upstream_kvm_selftests_do_not_regress(vm: Session, kernel: Kernel, settings: Settings,
                                               summary: Callable[[str], None]) -> None:
    def recorded(env: Environment, path: Path, done: run.Verdict) -> None:
        summary(f"no KVM selftest baseline for {env.describe()}: recorded {path.name} on the "
                f"unpatched base first (commit it); {done.summary('the base', 3)}")

    verdict = run.judge(vm, settings, kernel, BUDGET, recorded=recorded)
    summary(verdict.summary(kernel.release, 5))
    error = verdict.error()
    assert error is None, str(error)  # the series' own tests included (run.SERIES_TESTS)
    # Tests the base does not have (the series' own, and any other): nothing
    # to compare with, so each must pass.
    added = {t: r for t, r in verdict.run.results.items() if t not in verdict.base}
    assert all(r == "pass" for r in added.values()), f"tests the base does not have: {added}"
