"""Run the upstream KVM selftests with the kselftest runner, and judge them.

The result is compared with the baseline recorded on the unpatched base in
the same environment (:mod:`harness.kselftest.baseline`), so the patch is
only blamed for tests that passed there and no longer do; and the series'
own selftests (:data:`SERIES_TESTS`), which the base lacks, must pass.

Under TCG a run takes many minutes (the README has the measured times) and
has run past an hour on a loaded host, so a run is planned and bounded
rather than left to the runner's per-test limit alone:

- tests that failed on the base are run with a short per-test limit
  (``-o``): whatever they do, they cannot regress, and most of them fail
  by hitting the runner's 120 s limit; they still run, so a splat they
  provoke in the patched kernel is still caught;
- the whole run has a budget inside the guest (``timeout``), so an
  overrun leaves the VM up and the TAP written so far readable, and the
  report names the test that was running and the slowest ones;
- every TAP line is stamped with the guest's clock, which gives each
  test's duration.

A kernel that runs slower than the one the runner's limits were set for
(the debug kernel: its flavour's ``limit_multiplier``) gets each limit
multiplied by its *slowdown*.  The tests run on a :class:`Machine`, but
their install list and settings are read here: the test VM sees the
host's filesystem at the same paths.

A base pass that fails now is rerun alone :data:`RERUNS` times with its
normal limit and blamed on the series if any rerun fails (:func:`confirm`):
a race the series adds rarely passes all of them, and a test the series
makes slower keeps failing its normal limit.  A test listed as flaky with a
failure on the unpatched base in the same environment is reported instead
of blamed only when it still flakes: a rerun passes, and every failure of
it shows the listed assertion (:func:`flaked_as_listed`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness import flavours
from harness.errors import HarnessError
from harness.flavours import Flavour
from harness.kselftest import tap
from harness.kselftest.baseline import (
    DIRECTORY,
    FLAKY,
    Environment,
    dump,
    environment,
    excusable,
    header,
    load_flaky,
    load_or_record,
)
from harness.kselftest.baseline import path as baseline_path
from harness.machine import Machine
from harness.progress import say

if TYPE_CHECKING:  # the recording path imports the build and the VM only when it runs
    from harness.kernel.pipeline import Kernel
    from harness.settings import Settings
    from harness.vm.session import Session

# The series' own selftests (the names TAP gives them): the base has none of
# them, so no baseline can say they pass; each must pass in every run of the
# patched kernel, and one dropped from the selftests' Makefile fails it.
SERIES_TESTS = ("io_bus_lookup_test", "iofd_test")
# How often a base pass that failed in the run is rerun alone, with its normal limit.
RERUNS = 3
# The budget of a recording run on the base (every test with the runner's
# own limits, so longer than a planned run), before the flavour's slowdown.
RECORD_BUDGET = 3600
# After an overrun: user processes, oldest first, with their state and
# where in the kernel they wait (a "D" stuck in KVM tells the story).
LEFT_OVER = ("ps -eo pid,stat,etimes,wchan:28,args --sort=-etimes | "
             "grep -v ' \\[' | head -n 25")
# timeout(1)'s status when it stopped the command with TERM, or with KILL
# 30 s later.
BUDGET_RCS = (124, 137)
# The per-test limit for tests that failed on the base anyway.
KNOWN_FAILING_TIMEOUT = 30
# kselftest/runner.sh's limit for a directory without a settings file.
RUNNER_DEFAULT_TIMEOUT = 45


def series_tests(flavour: Flavour) -> tuple[str, ...]:
    """What a kernel of *flavour* must pass whatever the base did: the
    series' own tests, when the series is applied."""
    return SERIES_TESTS if flavour.patched else ()


def command(installed: Path, tests: list[str] | None = None, timeout: int | None = None,
            budget: int | None = None) -> str:
    """The shell command running the KVM selftests installed in *installed*
    (all of them, or *tests*) with the kselftest runner: stamped TAP on
    stdout.  *timeout* overrides each test's limit; *budget* bounds the
    whole run, which then exits with one of :data:`BUDGET_RCS`."""
    which = "-c kvm" if tests is None else " ".join(f"-t kvm:{t}" for t in tests)
    if timeout is not None:
        which += f" -o {timeout}"
    pipeline = f"./run_kselftest.sh {which} 2>&1 | {tap.STAMPER}"
    if budget is None:
        return f"cd {installed} && {pipeline}"
    # timeout(1) waits for its child alone: a test stuck past KILL (in D
    # state, say) cannot hold the run open, though it holds the pipe.
    return (f"cd {installed} && timeout -k 30 {budget} bash -c "
            + shlex.quote(f"set -o pipefail; {pipeline}"))


def available(installed: Path) -> list[str]:
    """The KVM tests the install holds, in the runner's order (the install
    flattens x86_64/amx_test to amx_test, the name TAP and -t use)."""
    lines = (Path(installed) / "kselftest-list.txt").read_text().splitlines()
    return [line.split(":", 1)[1] for line in lines if line.startswith("kvm:")]


@dataclass(frozen=True)
class Plan:
    """Which tests run with the runner's own limits, which with the short one."""

    full: list[str]
    known_failing: list[str]


def plan(tests: list[str], base: dict[str, str]) -> Plan:
    """Split *tests* (names) by what they did on the base."""
    failing = [t for t in tests if base.get(t) == "fail"]
    return Plan([t for t in tests if t not in failing], failing)


@dataclass(frozen=True)
class Run:
    results: dict[str, str]
    took: dict[str, int]
    overran: str | None  # what the budget cut short, or None
    tap: str


def run(machine: Machine, installed: Path, tests: list[str] | None = None,
        timeout: int | None = None, budget: int = 3600) -> Run:
    """Run the selftests (all, or those named) on *machine* within *budget*
    seconds; the machine stays up."""
    if tests is not None:
        known = set(available(installed))
        tests = [t for t in tests if t in known]
        if not tests:  # nothing to run: not the whole collection
            return Run({}, {}, None, "")
    # The host's limit only catches a guest that stopped answering.
    r = machine.run(command(installed, tests, timeout, budget), timeout=budget + 120)
    out = r.stdout
    overran = None
    if r.rc in BUDGET_RCS:
        left = machine.run(LEFT_OVER).stdout.strip()
        overran = (f"the run did not finish within its {budget} s budget, in "
                   f"{tap.unfinished(out) or 'no test'}; processes left in the guest:\n{left}")
    return Run(tap.parse(out), tap.durations(out), overran, out)


def per_test_limit(installed: Path) -> int:
    """The runner's per-test limit for the KVM tests: their ``settings`` file,
    else the runner's default."""
    settings = Path(installed) / "kvm" / "settings"
    if settings.exists():
        for line in settings.read_text().splitlines():
            if line.startswith("timeout="):
                return int(line.split("=", 1)[1])
    return RUNNER_DEFAULT_TIMEOUT


def limit(installed: Path, slowdown: int) -> int | None:
    """The per-test limit override for a kernel *slowdown* times slower than
    the one the runner's limits were set for (None: keep them)."""
    return per_test_limit(installed) * slowdown if slowdown > 1 else None


def run_planned(machine: Machine, installed: Path, base: dict[str, str], budget: int,
                slowdown: int) -> Run:
    """Every installed test, the ones that failed on the base with the short
    limit (see :func:`plan`), the others with the runner's limit times
    *slowdown*, within *budget* seconds in all."""
    p = plan(available(installed), base)
    short_budget = len(p.known_failing) * (KNOWN_FAILING_TIMEOUT + 15) + 60
    runs = [run(machine, installed, p.full, limit(installed, slowdown), budget - short_budget)]
    if p.known_failing:
        runs.append(run(machine, installed, p.known_failing, KNOWN_FAILING_TIMEOUT, short_budget))
    return Run({k: v for r in runs for k, v in r.results.items()},
               {k: v for r in runs for k, v in r.took.items()},
               "; ".join(r.overran for r in runs if r.overran) or None,
               "".join(r.tap for r in runs))


def rerun(machine: Machine, installed: Path, name: str, slowdown: int, reruns: int = RERUNS,
          until_passed: bool = False) -> list[Run]:
    """Up to *reruns* runs of *name* alone with its normal limit (the
    runner's, times *slowdown*), each as it went.  They stop at the first
    failing one, which blames the test; with *until_passed*, for a test
    only a passing rerun can excuse, at the first failing one once one has
    passed."""
    normal = per_test_limit(installed) * slowdown
    done: list[Run] = []
    for _ in range(reruns):
        done.append(run(machine, installed, [name], normal, normal + 120))
        seen = {r.results.get(name) == "pass" for r in done}
        if False in seen and (not until_passed or True in seen):
            break
    return done


def failed_again(name: str, reruns: list[Run]) -> bool:
    return any(r.results.get(name) != "pass" for r in reruns)


def confirm(machine: Machine, installed: Path, broken: list[str], slowdown: int,
            reruns: int = RERUNS) -> list[str]:
    """Of the *broken* tests, those that fail in any of *reruns* runs alone,
    each with its normal limit (see :func:`rerun`).

    A timing test may flake under TCG, so one failure in the full run is
    not proof; but a single passing rerun is too easy a pardon (a race that
    fails half the time would get through half the time, and with more
    time a test the series slowed down would always pass).  A test is
    forgiven only when it passes every rerun; the first failing rerun
    blames it."""
    return [name for name in broken
            if failed_again(name, rerun(machine, installed, name, slowdown, reruns))]


def flaked_as_listed(name: str, assertion: str, done: Run, reruns: list[Run]) -> bool:
    """Did the listed *name* fail only as its entry says it flakes: a rerun
    alone passed, and its failure in the run and in every failing rerun
    shows *assertion*?  A test failing every rerun, or failing some other
    way (another assertion, a timeout, a crash), is not that flake."""
    failures = [done, *(r for r in reruns if r.results.get(name) != "pass")]
    return (any(r.results.get(name) == "pass" for r in reruns)
            and all(assertion in tap.output(r.tap, name) for r in failures))


@dataclass(frozen=True)
class Verdict:
    """A run judged against the base, for the CLI and the VM suite to report."""

    run: Run
    base: dict[str, str]
    installed: Path
    regressions: list[str]
    """Passed on the base, failed in the run, and failed again in a rerun alone."""
    flaky: list[str]
    """Passed on the base, failed in the run, passed every rerun alone: not counted."""
    excused: list[str] = field(default_factory=list)
    """Failed in the run and in a rerun, passed another rerun, and listed in
    :data:`FLAKY` with a failure on the base here whose assertion each
    failure shows: reported, not counted."""
    newly_failing: list[str] = field(default_factory=list)
    """Skipped on the base, failed in the run: they ran now, and failed."""
    baseline: str = ""
    """The baseline's file name, for the summary."""
    required: tuple[str, ...] = ()
    """Tests that must pass whatever the base did (:func:`series_tests`)."""

    def summary(self, release: str, n_slowest: int = 8) -> str:
        """One line: counts (and the base's), time, slowest tests, flaky ones."""
        c = tap.counts(self.run.results)
        against = f" ({self.baseline})" if self.baseline else ""
        base = f"; base{against}: {tap.counts(self.base)}" if self.base else ""
        line = (f"KVM selftests on {release}: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip "
                f"({len(self.run.results)} run{base}) in {sum(self.run.took.values())} s; "
                f"slowest: {tap.slowest(self.run.took, n_slowest)}")
        if self.flaky:
            line += (f"; failed once, passed {RERUNS} reruns alone (flaky here, not counted): "
                     f"{' '.join(self.flaky)}")
        if self.excused:
            line += (f"; failed again alone, then passed, each failure as listed in {FLAKY.name} "
                     f"with a failure on the base here (not counted): {' '.join(self.excused)}")
        return line

    def not_passed(self) -> dict[str, str]:
        """The required tests that did not pass, with what they did instead."""
        return {t: self.run.results.get(t, "not run") for t in self.required
                if self.run.results.get(t) != "pass"}

    def error(self) -> HarnessError | None:
        """What fails the run, the most basic first; None when nothing does."""
        if not self.run.results:
            return HarnessError("the kselftest runner reported nothing",
                                self.run.tap[-3000:] or "it printed nothing")
        if self.run.overran:
            return HarnessError(self.run.overran, "give the run a larger budget "
                                "(kselftests --timeout), or run on a quieter host")
        hint = (f"rerun one with 'python -m harness run -- {self.installed}/"
                "run_kselftest.sh -t kvm:NAME'")
        if self.regressions:
            return HarnessError(f"passed on the base, not with the series (also in one of {RERUNS} "
                                f"reruns alone with the normal limit): {' '.join(self.regressions)}",
                                hint)
        if self.newly_failing:
            return HarnessError("skipped on the base, failing with the series: "
                                + " ".join(self.newly_failing), hint)
        if missing := self.not_passed():
            said = ", ".join(f"{t} ({how})" for t, how in missing.items())
            return HarnessError(f"the series' own selftests must pass: {said}",
                                hint + ("; one not run is not installed: is it still in "
                                         "tools/testing/selftests/kvm/Makefile?"
                                         if "not run" in missing.values() else ""))
        return None


def verdict(machine: Machine, installed: Path, base: dict[str, str], budget: int,
            slowdown: int, known_flaky: dict[str, str] | None = None,
            baseline: str = "", required: Collection[str] = SERIES_TESTS) -> Verdict:
    """Run the selftests on *machine* within *budget* seconds and judge them
    against *base* (the baseline named *baseline*, of this environment).
    With a base, the run is planned (:func:`run_planned`); without one
    (recording it), every test runs with the runner's limits (times
    *slowdown*).  The base's passes that fail are rerun alone
    (:func:`confirm`), unless the run reported nothing or overran, which
    fails it anyway.  *known_flaky*: test name -> the assertion its flake
    shows, for the tests that may flake here without blame (see
    :func:`flaked_as_listed`).  *required*: tests that must pass, the
    series' own by default (a recording on the base requires none)."""
    done = (run_planned(machine, installed, base, budget, slowdown) if base
            else run(machine, installed, None, limit(installed, slowdown), budget))
    judged = bool(done.results) and not done.overran
    broken = regressions(base, done.results) if judged else []
    listed = known_flaky or {}
    confirmed = confirm(machine, installed, [t for t in broken if t not in listed], slowdown)
    excused = []
    for name in (t for t in broken if t in listed):
        tries = rerun(machine, installed, name, slowdown, until_passed=True)
        if not failed_again(name, tries):
            continue
        confirmed.append(name)
        if flaked_as_listed(name, listed[name], done, tries):
            excused.append(name)
    return Verdict(done, base, installed, sorted(t for t in confirmed if t not in excused),
                   [t for t in broken if t not in confirmed], excused,
                   newly_failing(base, done.results) if judged else [], baseline,
                   tuple(required))


def regressions(base: dict[str, str], results: dict[str, str]) -> list[str]:
    """Tests that passed on the base and did not pass (or did not run) now."""
    return sorted(name for name, status in base.items()
                  if status == "pass" and results.get(name) != "pass")


def newly_failing(base: dict[str, str], results: dict[str, str]) -> list[str]:
    """Tests that skipped on the base and failed now: the series made them
    run (or they run for another reason now), and they fail."""
    return sorted(name for name, status in base.items()
                  if status == "skip" and results.get(name) == "fail")


# -- judging a booted kernel against its environment's baseline -----------------

def judge(vm: Session, cfg: Settings, kernel: Kernel, budget: int,
          record_budget: int = RECORD_BUDGET,
          recorded: Callable[[Environment, Path, Verdict], None] | None = None) -> Verdict:
    """Judge *kernel*, booted in *vm*, against the baseline of the
    environment it runs in, within *budget* seconds (times the flavour's
    slowdown).  When there is none, the base is recorded first within
    *record_budget* (see :func:`record_on_base`) with *vm* stopped (one VM
    at a time) and booted again after, whatever happens; *recorded* is
    then told."""
    flavour = flavours.get(kernel.flavour)
    slowdown = flavour.limit_multiplier
    env = environment(vm, vm.opts.accel.accel, kernel.flavour)

    def record(env: Environment, file: Path) -> None:
        vm.close()
        try:
            done, _ = record_on_base(cfg, env, file, record_budget)
        finally:
            vm.start()
        if recorded is not None:
            recorded(env, file, done)

    base, file = load_or_record(env, record)
    return verdict(vm, kernel.kselftests, base, budget * slowdown, slowdown,
                   excusable(load_flaky(), env), file.name, series_tests(flavour))


# -- recording a baseline on the unpatched base --------------------------------

def base_flavour(flavour: Flavour) -> Flavour:
    """The unpatched kernel whose results stand for *flavour*'s base: the
    ``base`` flavour for the default one, else *flavour* itself without the
    series (its config, boot and limits), in a worktree of its own."""
    if not flavour.patched:
        return flavour
    if flavour.name == flavours.DEFAULT:
        return flavours.get("base")
    return replace(flavour, name=f"base-{flavour.name}", patched=False,
                   localversion=f"-base-{flavour.name}")


Builder = Callable[["Settings"], "Kernel"]
Booter = Callable[["Settings", "Kernel"], AbstractContextManager[Machine]]


def _build(cfg: Settings) -> Kernel:
    from harness.kernel import pipeline

    return pipeline.make_kernel(cfg)


def _boot(cfg: Settings, kernel: Kernel) -> AbstractContextManager[Machine]:
    from harness.vm import session

    return session.boot(cfg, kernel)


def _accel(cfg: Settings) -> str:
    from harness.vm import accel

    return accel.detect(cfg.accel).accel


def record_on_base(cfg: Settings, env: Environment | None = None, file: Path | None = None,
                   budget: int = RECORD_BUDGET, build: Builder = _build, boot_vm: Booter = _boot,
                   directory: Path = DIRECTORY) -> tuple[Verdict, Path]:
    """Build the unpatched base of ``cfg.flavour`` (:func:`base_flavour`),
    boot it with *env*'s accelerator, check that it is *env* there, run every
    selftest with the runner's limits within *budget* seconds (times the
    slowdown) and write the results to *file*.  Without *env* (``kselftests
    --baseline``), the environment is the one the base boots in, under the
    accelerator *cfg* gives, and the file its baseline in *directory*.  A
    run that reported nothing or overran writes nothing.  The verdict, and
    the file written."""
    flavour = base_flavour(cfg.flavour)
    base_cfg = replace(cfg, flavour=flavour, accel=env.accel if env else _accel(cfg))
    kernel = build(base_cfg)
    slowdown = flavour.limit_multiplier
    with boot_vm(base_cfg, kernel) as vm:
        seen = environment(vm, env.accel if env else str(base_cfg.accel),
                           env.flavour if env else cfg.flavour.name)
        if env is not None and seen != env:
            raise HarnessError(f"the base booted in {seen.name}, not {env.name}: no baseline "
                               "recorded", "a baseline holds for its own environment only")
        v = verdict(vm, kernel.kselftests, {}, budget * slowdown, slowdown, required=())
    say(v.summary(kernel.release))
    error = v.error()
    if error is not None:
        raise error
    file = file or baseline_path(seen, directory)
    file.write_text(header(seen, kernel.release) + dump(v.run.results))
    return v, file
