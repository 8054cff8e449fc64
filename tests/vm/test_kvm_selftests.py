"""The kernel's own KVM selftests: nothing that passed on the base may break.

The baseline (tests/vm/kvm-selftests-baseline.txt) was recorded with the
same runner on the unpatched base kernel in this nested TCG environment:
`python -m harness kselftests --baseline`.  How a run is planned and
bounded is in :mod:`harness.kselftest`.
"""

from collections.abc import Callable

from harness import kselftest
from harness.kernel.prepare import Kernel
from harness.vm.session import Session

# The whole run, inside the guest: 15 min on a quiet host, so this leaves
# room for a loaded one and still fits CI's 90 minutes with the build.
BUDGET = 2700


def test_upstream_kvm_selftests_do_not_regress(guest: Session, kernel: Kernel,
                                               summary: Callable[[str], None]) -> None:
    base = kselftest.load()
    slowdown = kselftest.SLOWDOWN.get(kernel.flavour, 1)
    run = kselftest.run_planned(guest, kernel.kselftests, base, BUDGET * slowdown, slowdown)
    c = kselftest.counts(run.results)
    summary(f"KVM selftests on {kernel.release}: {c['pass']} pass, {c['fail']} fail, "
            f"{c['skip']} skip ({len(run.results)} run; base: {kselftest.counts(base)}) in "
            f"{sum(run.took.values())} s; slowest: {kselftest.slowest(run.took, 5)}")
    assert run.results, f"the kselftest runner reported nothing:\n{run.tap[-3000:]}"
    assert run.overran is None, f"{run.overran}; slowest: {kselftest.slowest(run.took)}"
    assert run.results.get("iofd_test") == "pass", "the series' own iofd_test did not pass"
    broken = kselftest.regressions(base, run.results)
    confirmed = kselftest.confirm(guest, kernel.kselftests, broken, slowdown)
    flaky = [name for name in broken if name not in confirmed]
    if flaky:
        summary(f"failed once, passed alone with twice the limit (flaky here, not counted): "
                f"{flaky}")
    assert not confirmed, f"passed on the base, not with the series (twice): {confirmed}"
