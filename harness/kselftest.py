"""Upstream KVM selftests: run them with the kselftest runner and judge them.

The runner's TAP lines say, per test, "ok", "ok ... # SKIP" or "not ok";
the result is compared with a baseline recorded on the unpatched base in
the same nested environment, so the patch is only blamed for tests that
passed there and no longer do.

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

Which tests pass, skip or fail on the base depends on where they run: the
accelerator (KVM or TCG), the virtualization extension the VM's own KVM
runs on (a VMX machine skips the SVM tests and runs the ``vmx_*`` ones)
and the kernel flavour (config, limits).  So there is one baseline per
:class:`Environment`, named by it, and a run is only ever judged against
its own environment's; one that has none records it on the unpatched base
first (:func:`record_on_base`).

A base pass that fails now is rerun alone :data:`RERUNS` times with its
normal limit and blamed on the series if any rerun fails (:func:`confirm`):
a race the series adds rarely passes all of them, and a test the series
makes slower keeps failing its normal limit.  Only a test listed in
:data:`FLAKY` with a failure on the unpatched base in the same environment
is reported instead of blamed.
"""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness import flavours
from harness.errors import HarnessError
from harness.flavours import Flavour
from harness.machine import Machine
from harness.progress import say

if TYPE_CHECKING:  # the recording path imports the build and the VM only when it runs
    from harness.kernel.pipeline import Kernel
    from harness.settings import Settings

BASELINES = Path(__file__).resolve().parent.parent / "tests" / "vm"
# Tests known to flake in an environment, each with its evidence: those
# whose evidence is a failure on the unpatched base are reported, not blamed.
FLAKY = BASELINES / "kvm-selftests-flaky.txt"
# How often a base pass that failed in the run is rerun alone, with its normal limit.
RERUNS = 3
# The budget of a recording run on the base (every test with the runner's
# own limits, so longer than a planned run), before the flavour's slowdown.
RECORD_BUDGET = 3600
_STAMP = r"(?:(?P<t>\d+) )?"
_RESULT = re.compile(_STAMP + r"(?P<not>not )?ok \d+ selftests: kvm: (?P<name>\S+)(?: # (?P<why>.*))?$")
_START = re.compile(_STAMP + r"# selftests: kvm: (?P<name>\S+)$")
# Prefix each line with the guest's epoch seconds (bash's printf, no fork per line).
_STAMPER = "while IFS= read -r l; do printf '%(%s)T %s\\n' -1 \"$l\"; done"
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
# Which virtualization extension the machine's CPU offers its own KVM.
VENDOR_COMMAND = "grep -m1 -owE 'vmx|svm' /proc/cpuinfo | head -n1"
VENDORS = {"svm": "AMD SVM", "vmx": "Intel VMX"}
ACCELS = {"kvm": "KVM", "tcg": "QEMU TCG"}
_ENV_LINE = re.compile(r"# environment: (?P<name>\S+)")


@dataclass(frozen=True)
class Environment:
    """What decides how the upstream selftests behave on the base: a baseline
    holds for one of these only."""

    accel: str
    """How the VM runs: "kvm" or "tcg"."""
    vendor: str
    """The extension the VM's own KVM runs on: "svm" or "vmx"."""
    flavour: str
    """The kernel flavour being judged (its config and limits), e.g. "default"."""

    @property
    def name(self) -> str:
        """The baseline's file name part, e.g. ``tcg-svm-default``."""
        return f"{self.accel}-{self.vendor}-{self.flavour}"

    def describe(self) -> str:
        return (f"{ACCELS.get(self.accel, self.accel)}, {VENDORS.get(self.vendor, self.vendor)}, "
                f"{self.flavour} flavour")

    @classmethod
    def parse(cls, name: str) -> Environment:
        """The inverse of :attr:`name` (a flavour name may hold dashes)."""
        accel, vendor, flavour = [*name.split("-", 2), "", ""][:3]
        if accel not in ACCELS or vendor not in VENDORS or not flavour:
            raise HarnessError(f"{name!r} is not an environment name",
                               "it reads ACCEL-VENDOR-FLAVOUR, e.g. tcg-svm-default")
        return cls(accel, vendor, flavour)


def vendor(machine: Machine) -> str:
    """The extension *machine*'s CPU offers (the VM's, not the host's: under
    TCG the VM gets AMD SVM whatever the host has)."""
    found = machine.run(VENDOR_COMMAND, timeout=60).stdout.strip()
    if found not in VENDORS:
        raise HarnessError(f"the CPU of {machine.label} has neither vmx nor svm in /proc/cpuinfo",
                           "KVM cannot run there, so its selftests would only skip")
    return found


def environment(machine: Machine, accel: str, flavour: str) -> Environment:
    """The environment of a run on *machine*, booted with *accel*, of a
    kernel of *flavour*."""
    return Environment(accel, vendor(machine), flavour)


def baseline_path(env: Environment, directory: Path = BASELINES) -> Path:
    return directory / f"kvm-selftests-baseline-{env.name}.txt"


def command(installed: str, tests: list[str] | None = None, timeout: int | None = None,
            budget: int | None = None) -> str:
    """The shell command running the KVM selftests installed in *installed*
    (all of them, or *tests*) with the kselftest runner: stamped TAP on
    stdout.  *timeout* overrides each test's limit; *budget* bounds the
    whole run, which then exits with one of :data:`BUDGET_RCS`."""
    which = "-c kvm" if tests is None else " ".join(f"-t kvm:{t}" for t in tests)
    if timeout is not None:
        which += f" -o {timeout}"
    pipeline = f"./run_kselftest.sh {which} 2>&1 | {_STAMPER}"
    if budget is None:
        return f"cd {installed} && {pipeline}"
    # timeout(1) waits for its child alone: a test stuck past KILL (in D
    # state, say) cannot hold the run open, though it holds the pipe.
    return (f"cd {installed} && timeout -k 30 {budget} bash -c "
            + shlex.quote(f"set -o pipefail; {pipeline}"))


def available(installed: str) -> list[str]:
    """The KVM tests the install holds, in the runner's order (the install
    flattens x86_64/amx_test to amx_test, the name TAP and -t use)."""
    lines = (Path(installed) / "kselftest-list.txt").read_text().splitlines()
    return [line.split(":", 1)[1] for line in lines if line.startswith("kvm:")]


@dataclass(frozen=True)
class Plan:
    """Which tests run with the runner's own limits, which with the short one."""

    full: list[str]
    known_failing: list[str]


def plan(tests: list[str], baseline: dict[str, str]) -> Plan:
    """Split *tests* (names) by what they did on the base."""
    failing = [t for t in tests if baseline.get(t) == "fail"]
    return Plan([t for t in tests if t not in failing], failing)


@dataclass(frozen=True)
class Run:
    results: dict[str, str]
    took: dict[str, int]
    overran: str | None  # what the budget cut short, or None
    tap: str


def run(machine: Machine, installed: str, tests: list[str] | None = None,
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
    tap = r.stdout
    overran = None
    if r.rc in BUDGET_RCS:
        left = machine.run(LEFT_OVER).stdout.strip()
        overran = (f"the run did not finish within its {budget} s budget, in "
                   f"{unfinished(tap) or 'no test'}; processes left in the guest:\n{left}")
    return Run(parse(tap), durations(tap), overran, tap)


def per_test_limit(installed: str) -> int:
    """The runner's per-test limit for the KVM tests: their ``settings`` file,
    else the runner's default."""
    settings = Path(installed) / "kvm" / "settings"
    if settings.exists():
        for line in settings.read_text().splitlines():
            if line.startswith("timeout="):
                return int(line.split("=", 1)[1])
    return RUNNER_DEFAULT_TIMEOUT


def limit(installed: str, slowdown: int) -> int | None:
    """The per-test limit override for a kernel *slowdown* times slower than
    the one the runner's limits were set for (None: keep them)."""
    return per_test_limit(installed) * slowdown if slowdown > 1 else None


def run_planned(machine: Machine, installed: str, baseline: dict[str, str], budget: int,
                slowdown: int) -> Run:
    """Every installed test, the ones that failed on the base with the short
    limit (see :func:`plan`), the others with the runner's limit times
    *slowdown*, within *budget* seconds in all."""
    p = plan(available(installed), baseline)
    short_budget = len(p.known_failing) * (KNOWN_FAILING_TIMEOUT + 15) + 60
    runs = [run(machine, installed, p.full, limit(installed, slowdown), budget - short_budget)]
    if p.known_failing:
        runs.append(run(machine, installed, p.known_failing, KNOWN_FAILING_TIMEOUT, short_budget))
    return Run({k: v for r in runs for k, v in r.results.items()},
               {k: v for r in runs for k, v in r.took.items()},
               "; ".join(r.overran for r in runs if r.overran) or None,
               "".join(r.tap for r in runs))


def confirm(machine: Machine, installed: str, broken: list[str], slowdown: int,
            reruns: int = RERUNS) -> list[str]:
    """Of the *broken* tests, those that fail in any of *reruns* runs alone,
    each with its normal limit (the runner's, times *slowdown*).

    A timing test may flake under TCG, so one failure in the full run is
    not proof; but a single passing rerun is too easy a pardon (a race that
    fails half the time would get through half the time, and with more
    time a test the series slowed down would always pass).  A test is
    forgiven only when it passes every rerun; the first failing rerun
    blames it."""
    normal = per_test_limit(installed) * slowdown
    return [name for name in broken
            if any(run(machine, installed, [name], normal, normal + 120).results.get(name) != "pass"
                   for _ in range(reruns))]


@dataclass(frozen=True)
class Verdict:
    """A run judged against the base, for the CLI and the VM suite to report."""

    run: Run
    base: dict[str, str]
    installed: str
    regressions: list[str]
    """Passed on the base, failed in the run, and failed again in a rerun alone."""
    flaky: list[str]
    """Passed on the base, failed in the run, passed every rerun alone: not counted."""
    excused: list[str] = field(default_factory=list)
    """Failed in the run and in a rerun, but listed in :data:`FLAKY` with a
    failure on the base here: reported, not counted."""
    newly_failing: list[str] = field(default_factory=list)
    """Skipped on the base, failed in the run: they ran now, and failed."""
    baseline: str = ""
    """The baseline's file name, for the summary."""

    def summary(self, release: str, n_slowest: int = 8) -> str:
        """One line: counts (and the base's), time, slowest tests, flaky ones."""
        c = counts(self.run.results)
        against = f" ({self.baseline})" if self.baseline else ""
        base = f"; base{against}: {counts(self.base)}" if self.base else ""
        line = (f"KVM selftests on {release}: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip "
                f"({len(self.run.results)} run{base}) in {sum(self.run.took.values())} s; "
                f"slowest: {slowest(self.run.took, n_slowest)}")
        if self.flaky:
            line += (f"; failed once, passed {RERUNS} reruns alone (flaky here, not counted): "
                     f"{' '.join(self.flaky)}")
        if self.excused:
            line += (f"; failed again alone but listed in {FLAKY.name} with a failure on the base "
                     f"here (not counted): {' '.join(self.excused)}")
        return line

    def error(self) -> HarnessError | None:
        """What fails the run, the most basic first; None when nothing does."""
        if not self.run.results:
            return HarnessError("the kselftest runner reported nothing",
                                self.run.tap[-3000:] or "it printed nothing")
        if self.run.overran:
            return HarnessError(self.run.overran, "give the run a larger budget "
                                "(kselftests --timeout), or run on a quieter host")
        rerun = (f"rerun one with 'python -m harness run -- {self.installed}/"
                 "run_kselftest.sh -t kvm:NAME'")
        if self.regressions:
            return HarnessError(f"passed on the base, not with the series (also in one of {RERUNS} "
                                f"reruns alone with the normal limit): {' '.join(self.regressions)}",
                                rerun)
        if self.newly_failing:
            return HarnessError("skipped on the base, failing with the series: "
                                + " ".join(self.newly_failing), rerun)
        return None


def verdict(machine: Machine, installed: str, base: dict[str, str], budget: int,
            slowdown: int, known_flaky: dict[str, str] | None = None,
            baseline: str = "") -> Verdict:
    """Run the selftests on *machine* within *budget* seconds and judge them
    against *base* (the baseline named *baseline*, of this environment).
    With a base, the run is planned (:func:`run_planned`); without one
    (recording it), every test runs with the runner's limits (times
    *slowdown*).  The base's passes that fail are rerun alone
    (:func:`confirm`), unless the run reported nothing or overran, which
    fails it anyway.  *known_flaky*: the tests that may fail here without
    blame (see :func:`excusable`)."""
    done = (run_planned(machine, installed, base, budget, slowdown) if base
            else run(machine, installed, None, limit(installed, slowdown), budget))
    judged = bool(done.results) and not done.overran
    broken = regressions(base, done.results) if judged else []
    confirmed = confirm(machine, installed, broken, slowdown)
    excused = [t for t in confirmed if t in (known_flaky or {})]
    return Verdict(done, base, installed, [t for t in confirmed if t not in excused],
                   [t for t in broken if t not in confirmed], excused,
                   newly_failing(base, done.results) if judged else [], baseline)


def parse(tap: str) -> dict[str, str]:
    """Test name -> "pass", "skip" or "fail" (timeouts and crashes are failures)."""
    results = {}
    for line in tap.splitlines():
        m = _RESULT.match(line.strip())
        if not m:
            continue
        if m.group("not"):
            results[m.group("name")] = "fail"
        elif (m.group("why") or "").startswith("SKIP"):
            results[m.group("name")] = "skip"
        else:
            results[m.group("name")] = "pass"
    return results


def durations(tap: str) -> dict[str, int]:
    """Test name -> seconds it ran, from stamped TAP; a test still running
    when the output ends is left out (see :func:`unfinished`)."""
    started: dict[str, int] = {}
    took = {}
    for line in tap.splitlines():
        line = line.strip()
        if (m := _START.match(line)) and m.group("t"):
            started[m.group("name")] = int(m.group("t"))
        elif (m := _RESULT.match(line)) and m.group("t") and m.group("name") in started:
            took[m.group("name")] = int(m.group("t")) - started[m.group("name")]
    return took


def unfinished(tap: str) -> str | None:
    """The test that had started and not reported when the output ends."""
    current = None
    for line in tap.splitlines():
        line = line.strip()
        if m := _START.match(line):
            current = m.group("name")
        elif (m := _RESULT.match(line)) and m.group("name") == current:
            current = None
    return current


def slowest(took: dict[str, int], n: int = 8) -> str:
    top = sorted(took.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {s} s" for name, s in top)


def counts(results: dict[str, str]) -> dict[str, int]:
    return {k: sum(v == k for v in results.values()) for k in ("pass", "fail", "skip")}


def regressions(baseline: dict[str, str], results: dict[str, str]) -> list[str]:
    """Tests that passed on the base and did not pass (or did not run) now."""
    return sorted(name for name, status in baseline.items()
                  if status == "pass" and results.get(name) != "pass")


def newly_failing(baseline: dict[str, str], results: dict[str, str]) -> list[str]:
    """Tests that skipped on the base and failed now: the series made them
    run (or they run for another reason now), and they fail."""
    return sorted(name for name, status in baseline.items()
                  if status == "skip" and results.get(name) == "fail")


def dump(results: dict[str, str]) -> str:
    return "".join(f"{name} {status}\n" for name, status in sorted(results.items()))


def header(env: Environment, release: str) -> str:
    """A baseline's first lines: what it was recorded on, and where."""
    return (f"# KVM selftests on the unpatched base {release}, one vCPU, {env.accel}; written by "
            f"the harness ('python -m harness kselftests --baseline' or the VM suite)\n"
            f"# environment: {env.name} ({env.describe()})\n")


def load(path: Path, env: Environment | None = None) -> dict[str, str]:
    """The baseline in *path*; with *env*, only if the file says it was
    recorded there (a file copied to another environment's name is refused)."""
    text = path.read_text()
    if env is not None:
        said = next((m.group("name") for line in text.splitlines()
                     if (m := _ENV_LINE.match(line))), None)
        if said != env.name:
            raise HarnessError(f"{path.name} says it was recorded in {said or 'no environment'}, "
                               f"not {env.name}", "record it again on the base in this environment "
                               "(delete the file; the next run records it)")
    lines = [line.split() for line in text.splitlines()
             if line.strip() and not line.startswith("#")]
    return {name: status for name, status in lines}


def baseline_for(env: Environment, record: Callable[[Environment, Path], None],
                 directory: Path = BASELINES) -> tuple[dict[str, str], Path]:
    """*env*'s baseline and its file; when there is none, *record* (see
    :func:`record_on_base`) writes it first.  Never another environment's."""
    path = baseline_path(env, directory)
    if not path.exists():
        say(f"no KVM selftest baseline for {env.describe()} ({path.name}): recording one on the "
            "unpatched base now; this builds the base kernel in its own worktree and runs every "
            "selftest on it, which takes long (tens of minutes under TCG)")
        record(env, path)
        if not path.exists():
            raise HarnessError(f"recording the baseline for {env.name} did not write {path}")
        say(f"baseline for {env.name} written to {path}; commit it with the run that made it")
    return load(path, env), path


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


def record_on_base(cfg: Settings, env: Environment, path: Path, budget: int = RECORD_BUDGET,
                   build: Builder = _build, boot_vm: Booter = _boot) -> Verdict:
    """Build the unpatched base of ``cfg.flavour`` (:func:`base_flavour`),
    boot it with *env*'s accelerator, check that it is *env* there, run every
    selftest with the runner's limits within *budget* seconds (times the
    slowdown) and write the results to *path*.  A run that reported nothing
    or overran writes nothing."""
    flavour = base_flavour(cfg.flavour)
    base_cfg = replace(cfg, flavour=flavour, accel=env.accel)
    kernel = build(base_cfg)
    slowdown = flavour.limit_multiplier
    with boot_vm(base_cfg, kernel) as vm:
        seen = environment(vm, env.accel, env.flavour)
        if seen != env:
            raise HarnessError(f"the base booted in {seen.name}, not {env.name}: no baseline "
                               "recorded", "a baseline holds for its own environment only")
        v = verdict(vm, kernel.kselftests, {}, budget * slowdown, slowdown)
    error = v.error()
    if error is not None:
        raise error
    path.write_text(header(env, kernel.release) + dump(v.run.results))
    return v


# -- tests known to flake ----------------------------------------------------

@dataclass(frozen=True)
class Flake:
    """One line of :data:`FLAKY`: ``NAME ENVIRONMENT DATE base|patched EVIDENCE``."""

    name: str
    env: str
    date: datetime.date
    on: str
    """"base": it failed on the unpatched base; "patched": only seen with the series."""
    evidence: str

    def excuses(self, env: Environment) -> bool:
        """Only a failure on the unpatched base, in the same environment,
        shows that the test fails without the series."""
        return self.on == "base" and self.env == env.name


def load_flaky(path: Path = FLAKY) -> list[Flake]:
    """Every entry of *path*, checked (a malformed line is an error, not a
    silent pardon)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(None, 4)
        if len(parts) < 5 or parts[3] not in ("base", "patched"):
            raise HarnessError(f"{path.name}: cannot read {line[:60]!r}",
                               "lines read NAME ENVIRONMENT YYYY-MM-DD base|patched EVIDENCE")
        name, env, date, on, evidence = parts
        Environment.parse(env)
        out.append(Flake(name, env, datetime.date.fromisoformat(date), on, evidence))
    return out


def excusable(flakes: list[Flake], env: Environment) -> dict[str, str]:
    """Test name -> evidence, for the entries that excuse a failure in *env*."""
    return {f.name: f.evidence for f in flakes if f.excuses(env)}
