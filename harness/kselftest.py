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
"""

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.machine import Machine

BASELINE = Path(__file__).resolve().parent.parent / "tests" / "vm" / "kvm-selftests-baseline.txt"
# Tests seen failing here on a kernel that passed them in another run, each
# with its evidence: they are reported, not blamed on the series.
FLAKY = BASELINE.with_name("kvm-selftests-flaky.txt")
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


def confirm(machine: Machine, installed: str, broken: list[str], slowdown: int) -> list[str]:
    """Of the *broken* tests, those that fail again when rerun alone with
    twice their limit.  Timing tests flake under TCG on a shared host, and
    on a loaded one a test that needs 100 s on a quiet host runs past the
    runner's 120 s: more time passes it, while a hang or a wrong result
    still fails."""
    twice = per_test_limit(installed) * slowdown * 2
    return [name for name in broken
            if run(machine, installed, [name], twice, twice + 120).results.get(name) != "pass"]


@dataclass(frozen=True)
class Verdict:
    """A run judged against the base, for the CLI and the VM suite to report."""

    run: Run
    base: dict[str, str]
    installed: str
    regressions: list[str]
    """Passed on the base, failed in the run, and failed again alone."""
    flaky: list[str]
    """Passed on the base, failed in the run, passed alone: not counted."""
    excused: list[str] = field(default_factory=list)
    """Failed in the run and again alone, but listed in :data:`FLAKY`: reported, not counted."""

    def summary(self, release: str, n_slowest: int = 8) -> str:
        """One line: counts (and the base's), time, slowest tests, flaky ones."""
        c = counts(self.run.results)
        base = f"; base: {counts(self.base)}" if self.base else ""
        line = (f"KVM selftests on {release}: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip "
                f"({len(self.run.results)} run{base}) in {sum(self.run.took.values())} s; "
                f"slowest: {slowest(self.run.took, n_slowest)}")
        if self.flaky:
            line += ("; failed once, passed alone with twice the limit (flaky here, not "
                     f"counted): {' '.join(self.flaky)}")
        if self.excused:
            line += (f"; failed twice but listed as flaky here in {FLAKY.name} (not counted): "
                     f"{' '.join(self.excused)}")
        return line

    def error(self) -> HarnessError | None:
        """What fails the run, the most basic first; None when nothing does."""
        if not self.run.results:
            return HarnessError("the kselftest runner reported nothing",
                                self.run.tap[-3000:] or "it printed nothing")
        if self.run.overran:
            return HarnessError(self.run.overran, "give the run a larger budget "
                                "(kselftests --timeout), or run on a quieter host")
        if self.regressions:
            return HarnessError(f"passed on the base, not with the series (also alone, with twice "
                                f"the time): {' '.join(self.regressions)}",
                                f"rerun one with 'python -m harness run -- {self.installed}/"
                                "run_kselftest.sh -t kvm:NAME'")
        return None


def verdict(machine: Machine, installed: str, base: dict[str, str], budget: int,
            slowdown: int, known_flaky: dict[str, str] | None = None) -> Verdict:
    """Run the selftests on *machine* within *budget* seconds and judge them
    against *base*.  With a base, the run is planned (:func:`run_planned`);
    without one (recording it), every test runs with the runner's limits
    (times *slowdown*).
    The base's passes that fail are rerun alone (:func:`confirm`), unless
    the run reported nothing or overran, which fails it anyway."""
    done = (run_planned(machine, installed, base, budget, slowdown) if base
            else run(machine, installed, None, limit(installed, slowdown), budget))
    broken = regressions(base, done.results) if done.results and not done.overran else []
    confirmed = confirm(machine, installed, broken, slowdown)
    excused = [t for t in confirmed if t in (known_flaky or {})]
    return Verdict(done, base, installed, [t for t in confirmed if t not in excused],
                   [t for t in broken if t not in confirmed], excused)


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


def dump(results: dict[str, str]) -> str:
    return "".join(f"{name} {status}\n" for name, status in sorted(results.items()))


def load(path: Path = BASELINE) -> dict[str, str]:
    lines = [line.split() for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {name: status for name, status in lines}


def load_flaky(path: Path = FLAKY) -> dict[str, str]:
    """Test name -> the evidence recorded for it in *path*."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, evidence = line.partition(" ")
            out[name] = evidence.strip()
    return out
