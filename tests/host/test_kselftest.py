"""Judging the upstream KVM selftests against the base's baseline."""

import subprocess
import time
from pathlib import Path

import pytest

from harness import flavours, kselftest
from harness.machine import Result

TAP = """\
TAP version 13
1..4
# selftests: kvm: x86_64/cpuid_test
# ok 1 something inside the test
ok 1 selftests: kvm: x86_64/cpuid_test
# selftests: kvm: x86_64/amx_test
ok 2 selftests: kvm: x86_64/amx_test # SKIP
# selftests: kvm: dirty_log_test
not ok 3 selftests: kvm: dirty_log_test # TIMEOUT 120 seconds
# selftests: kvm: x86_64/iofd_test
not ok 4 selftests: kvm: x86_64/iofd_test # exit=1
"""


def test_parse() -> None:
    assert kselftest.parse(TAP) == {
        "x86_64/cpuid_test": "pass",
        "x86_64/amx_test": "skip",
        "dirty_log_test": "fail",
        "x86_64/iofd_test": "fail",
    }


def test_regressions_are_base_passes_only() -> None:
    base = {"a": "pass", "b": "fail", "c": "skip", "d": "pass"}
    now = {"a": "pass", "b": "fail", "c": "fail", "d": "skip"}
    assert kselftest.regressions(base, now) == ["d"]
    assert kselftest.regressions(base, {"a": "pass"}) == ["d"]  # not run counts too


def test_dump_load_round_trip(tmp_path) -> None:
    res = kselftest.parse(TAP)
    p = tmp_path / "baseline.txt"
    p.write_text("# comment\n" + kselftest.dump(res))
    assert kselftest.load(p) == res
    assert kselftest.counts(res) == {"pass": 1, "fail": 2, "skip": 1}


STAMPED = """\
1000 TAP version 13
1000 1..3
1000 # selftests: kvm: cpuid_test
1004 ok 1 selftests: kvm: cpuid_test
1004 # selftests: kvm: dirty_log_test
1124 #
1124 not ok 2 selftests: kvm: dirty_log_test # TIMEOUT 120 seconds
1124 # selftests: kvm: iofd_test
1125 # ok 1 a line of the test's own TAP
"""


def test_stamped_lines_parse_and_time() -> None:
    assert kselftest.parse(STAMPED) == {"cpuid_test": "pass", "dirty_log_test": "fail"}
    assert kselftest.durations(STAMPED) == {"cpuid_test": 4, "dirty_log_test": 120}
    assert kselftest.unfinished(STAMPED) == "iofd_test"
    assert kselftest.unfinished(TAP) is None
    assert kselftest.slowest({"a": 1, "b": 30, "c": 7}, n=2) == "b 30 s, c 7 s"


def test_command_runs_all_or_some_within_a_budget() -> None:
    all_ = kselftest.command("/ks")
    assert all_.startswith("cd /ks && ./run_kselftest.sh -c kvm 2>&1 | ")
    some = kselftest.command("/ks", ["a", "b"], timeout=30, budget=600)
    assert some.startswith("cd /ks && timeout -k 30 600 bash -c 'set -o pipefail; "
                           "./run_kselftest.sh -t kvm:a -t kvm:b -o 30 2>&1 | ")
    assert "-c kvm" not in kselftest.command("/ks", [])


def test_the_budget_stops_the_run_and_says_so(tmp_path: Path) -> None:
    """The real pipeline in bash, with a runner that never ends."""
    (tmp_path / "run_kselftest.sh").write_text(
        "echo '# selftests: kvm: stuck_test'; exec sleep 600\n")
    (tmp_path / "run_kselftest.sh").chmod(0o755)
    t0 = time.monotonic()
    r = subprocess.run(["bash", "-c", kselftest.command(str(tmp_path), ["stuck_test"], budget=2)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in kselftest.BUDGET_RCS and time.monotonic() - t0 < 30
    assert kselftest.unfinished(r.stdout) == "stuck_test"


def test_the_stamper_stamps_every_line_in_bash() -> None:
    cmd = kselftest.command("/", ["x"]).split(" | ", 1)[1]
    assert cmd == kselftest._STAMPER
    out = subprocess.run(["bash", "-c", f"printf 'a b\\n  c\\n' | {cmd}"],
                         capture_output=True, text=True, check=True).stdout
    stamps = [line.split(" ", 1) for line in out.splitlines()]
    assert [rest for _, rest in stamps] == ["a b", "  c"]
    assert all(abs(int(t) - time.time()) < 60 for t, _ in stamps)


def test_plan_gives_base_failures_the_short_limit() -> None:
    base = {"a": "pass", "b": "fail", "c": "skip"}
    p = kselftest.plan(["a", "b", "c", "new_test"], base)
    assert p.full == ["a", "c", "new_test"] and p.known_failing == ["b"]


class FakeGuest:
    """Answers each command with the next canned (stdout, rc)."""

    def __init__(self, *answers: tuple[str, int]) -> None:
        self.answers = list(answers)
        self.commands: list[tuple[str, float]] = []

    def run(self, cmd: str, timeout: float = 600.0, env: dict[str, str] | None = None, *,
            what: str | None = None) -> Result:
        self.commands.append((cmd, timeout))
        out, rc = self.answers.pop(0)
        return Result(out, "", rc)


@pytest.fixture
def installed(tmp_path: Path) -> str:
    (tmp_path / "kselftest-list.txt").write_text(
        "kvm:cpuid_test\nkvm:dirty_log_test\nkvm:iofd_test\nkvm:steal_time\n")
    return str(tmp_path)


def test_planned_run_is_two_bounded_runs(installed: str) -> None:
    base = {"cpuid_test": "pass", "dirty_log_test": "fail", "steal_time": "pass"}
    guest = FakeGuest((STAMPED, kselftest.BUDGET_RCS[0]),
                      ("  PID STAT ELAPSED WCHAN ARGS\n  42 D 900 kvm_vcpu_block ./iofd_test\n", 0),
                      ("9 not ok 1 selftests: kvm: dirty_log_test # TIMEOUT 30 seconds\n", 0))
    run = kselftest.run_planned(guest, installed, base, budget=1000, slowdown=1)  # type: ignore[arg-type]
    (full, full_limit), (ps, _), (short, short_limit) = guest.commands
    assert ps == kselftest.LEFT_OVER
    assert "-t kvm:cpuid_test -t kvm:iofd_test -t kvm:steal_time 2>&1" in full
    assert f"-t kvm:dirty_log_test -o {kselftest.KNOWN_FAILING_TIMEOUT}" in short
    short_budget = 1 * (kselftest.KNOWN_FAILING_TIMEOUT + 15) + 60
    assert f"timeout -k 30 {short_budget} " in short
    assert f"timeout -k 30 {1000 - short_budget} " in full
    assert full_limit > 1000 - short_budget and short_limit > short_budget  # the guest's own first
    assert run.overran is not None and "in iofd_test" in run.overran
    assert "42 D 900 kvm_vcpu_block ./iofd_test" in run.overran
    assert run.results["dirty_log_test"] == "fail"
    # steal_time never ran: a regression, not silently absent.
    assert kselftest.regressions(base, run.results) == ["steal_time"]


def test_a_run_of_nothing_runs_nothing(installed: str) -> None:
    guest = FakeGuest()
    run = kselftest.run(guest, installed, ["not_installed"])  # type: ignore[arg-type]
    assert run.results == {} and guest.commands == []


def test_available_reads_the_install_list(installed: str) -> None:
    assert kselftest.available(installed)[:2] == ["cpuid_test", "dirty_log_test"]


def test_a_slower_kernel_gets_longer_limits(installed: str) -> None:
    assert kselftest.limit(installed, 1) is None  # the runner's own limits stand
    assert kselftest.limit(installed, 3) == 3 * kselftest.RUNNER_DEFAULT_TIMEOUT
    (Path(installed) / "kvm").mkdir()
    (Path(installed) / "kvm" / "settings").write_text("# limit\ntimeout=120\n")
    assert kselftest.limit(installed, flavours.get("debug").limit_multiplier) == 360


def test_a_regression_counts_only_if_it_fails_again_alone_with_more_time(installed: str) -> None:
    guest = FakeGuest(("1 ok 1 selftests: kvm: cpuid_test\n", 0),
                      ("1 not ok 1 selftests: kvm: steal_time # exit=1\n", 0))
    assert kselftest.confirm(guest, installed, ["cpuid_test", "steal_time"], 1) == ["steal_time"]  # type: ignore[arg-type]
    twice = 2 * kselftest.RUNNER_DEFAULT_TIMEOUT
    assert all(f"-o {twice} " in cmd and f"timeout -k 30 {twice + 120} " in cmd
               for cmd, _ in guest.commands)


# -- the verdict both the CLI and the VM suite report -------------------------

BASE = {"cpuid_test": "pass", "dirty_log_test": "fail", "steal_time": "pass"}


def test_a_verdict_counts_only_regressions_that_fail_again_alone(installed: str) -> None:
    guest = FakeGuest(("1 not ok 1 selftests: kvm: cpuid_test # exit=1\n"
                       "2 ok 2 selftests: kvm: iofd_test\n"
                       "3 not ok 3 selftests: kvm: steal_time # exit=1\n", 0),
                      ("4 not ok 1 selftests: kvm: dirty_log_test # TIMEOUT 30 seconds\n", 0),
                      ("5 ok 1 selftests: kvm: cpuid_test\n", 0),
                      ("6 not ok 1 selftests: kvm: steal_time # exit=1\n", 0))
    v = kselftest.verdict(guest, installed, BASE, budget=1000, slowdown=3)  # type: ignore[arg-type]
    assert (v.regressions, v.flaky) == (["steal_time"], ["cpuid_test"])
    full, _, *alone = [cmd for cmd, _ in guest.commands]
    assert f"-o {3 * kselftest.RUNNER_DEFAULT_TIMEOUT} " in full  # the slowdown reaches each limit
    twice = 2 * 3 * kselftest.RUNNER_DEFAULT_TIMEOUT
    assert all(f"-o {twice} " in cmd for cmd in alone) and len(alone) == 2
    error = v.error()
    assert error is not None and error.what.endswith("twice the time): steal_time")
    assert f"{installed}/run_kselftest.sh -t kvm:NAME" in (error.hint or "")
    line = v.summary("6.12-iofd")
    assert line.startswith("KVM selftests on 6.12-iofd: 1 pass, 3 fail, 0 skip (4 run; base: "
                           "{'pass': 2, 'fail': 1, 'skip': 0})")
    assert line.endswith("(flaky here, not counted): cpuid_test")


def test_a_clean_verdict_has_no_error(installed: str) -> None:
    guest = FakeGuest(("1 ok 1 selftests: kvm: cpuid_test\n1 ok 2 selftests: kvm: steal_time\n", 0),
                      ("1 not ok 1 selftests: kvm: dirty_log_test\n", 0))
    v = kselftest.verdict(guest, installed, BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert v.error() is None and v.regressions == v.flaky == []
    assert len(guest.commands) == 2  # nothing to confirm
    assert "flaky" not in v.summary("r")


def test_an_overrun_fails_the_verdict_without_confirming(installed: str) -> None:
    guest = FakeGuest((STAMPED, kselftest.BUDGET_RCS[0]), ("  PID STAT\n", 0),
                      ("9 not ok 1 selftests: kvm: dirty_log_test\n", 0))
    v = kselftest.verdict(guest, installed, BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert len(guest.commands) == 3 and v.regressions == []  # steal_time is not rerun
    error = v.error()
    assert error is not None and "in iofd_test" in error.what and "budget" in (error.hint or "")


def test_a_run_that_reports_nothing_fails_the_verdict(installed: str) -> None:
    guest = FakeGuest(("bash: ./run_kselftest.sh: No such file or directory\n", 0),
                      ("", 0))
    v = kselftest.verdict(guest, installed, BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert len(guest.commands) == 2  # no base pass is rerun alone
    error = v.error()
    assert error is not None and error.what == "the kselftest runner reported nothing"
    assert "No such file" in (error.hint or "")


def test_recording_the_baseline_runs_every_test_with_the_runners_limits(installed: str) -> None:
    guest = FakeGuest((TAP, 0))
    v = kselftest.verdict(guest, installed, {}, budget=1000, slowdown=1)  # type: ignore[arg-type]
    [(cmd, _)] = guest.commands
    assert "./run_kselftest.sh -c kvm 2>&1" in cmd  # all, and no -o override
    assert v.error() is None  # its failures are what the baseline records
    assert "base:" not in v.summary("r") and v.run.results["dirty_log_test"] == "fail"


def test_a_listed_flaky_test_is_reported_not_counted(installed: str) -> None:
    """Failing in the run and again alone fails the verdict, unless the test is
    in the flaky list; then the summary names it and nothing else changes."""
    run_out = ("1 ok 1 selftests: kvm: cpuid_test\n"
               "2 not ok 2 selftests: kvm: steal_time # exit=1\n")
    alone = ("3 not ok 1 selftests: kvm: steal_time # exit=1\n", 0)
    base = {"cpuid_test": "pass", "steal_time": "pass"}
    listed = kselftest.verdict(FakeGuest((run_out, 0), alone), installed, base, budget=1000,
                               slowdown=1, known_flaky={"steal_time": "seen"})  # type: ignore[arg-type]
    assert listed.error() is None and listed.excused == ["steal_time"]
    assert "listed as flaky" in listed.summary("r") and "steal_time" in listed.summary("r")
    unlisted = kselftest.verdict(FakeGuest((run_out, 0), alone), installed, base, budget=1000,
                                 slowdown=1, known_flaky={"other": "seen"})  # type: ignore[arg-type]
    assert unlisted.error() is not None and unlisted.regressions == ["steal_time"]


def test_the_flaky_list_gives_evidence_for_each_test() -> None:
    flaky = kselftest.load_flaky()
    assert flaky, "an empty list: delete the file instead"
    assert all(len(evidence) > 40 and "20" in evidence for evidence in flaky.values())
    assert set(flaky) <= set(kselftest.load()), "only tests the baseline knows"
