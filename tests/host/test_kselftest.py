"""Judging the upstream KVM selftests against the base's baseline."""

import dataclasses
import datetime
import itertools
import math
import random
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import pytest

from harness import flavours, paths
from harness.errors import HarnessError
from harness.kernel.pipeline import Kernel
from harness.kselftest import baseline, run, tap
from harness.machine import Result
from harness.settings import Settings

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
    assert tap.parse(TAP) == {
        "x86_64/cpuid_test": "pass",
        "x86_64/amx_test": "skip",
        "dirty_log_test": "fail",
        "x86_64/iofd_test": "fail",
    }


def test_regressions_are_base_passes_only() -> None:
    base = {"a": "pass", "b": "fail", "c": "skip", "d": "pass"}
    now = {"a": "pass", "b": "fail", "c": "fail", "d": "skip"}
    assert run.regressions(base, now) == ["d"]
    assert run.regressions(base, {"a": "pass"}) == ["d"]  # not run counts too


def test_dump_load_round_trip(tmp_path) -> None:
    res = tap.parse(TAP)
    p = tmp_path / "baseline.txt"
    p.write_text("# comment\n" + baseline.dump(res))
    assert baseline.load(p) == res
    assert tap.counts(res) == {"pass": 1, "fail": 2, "skip": 1}


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
    assert tap.parse(STAMPED) == {"cpuid_test": "pass", "dirty_log_test": "fail"}
    assert tap.durations(STAMPED) == {"cpuid_test": 4, "dirty_log_test": 120}
    assert tap.unfinished(STAMPED) == "iofd_test"
    assert tap.unfinished(TAP) is None
    assert tap.slowest({"a": 1, "b": 30, "c": 7}, n=2) == "b 30 s, c 7 s"


def test_command_runs_all_or_some_within_a_budget() -> None:
    all_ = run.command("/ks")
    assert all_.startswith("cd /ks && ./run_kselftest.sh -c kvm 2>&1 | ")
    some = run.command("/ks", ["a", "b"], timeout=30, budget=600)
    assert some.startswith("cd /ks && timeout -k 30 600 bash -c 'set -o pipefail; "
                           "./run_kselftest.sh -t kvm:a -t kvm:b -o 30 2>&1 | ")
    assert "-c kvm" not in run.command("/ks", [])


def test_the_budget_stops_the_run_and_says_so(tmp_path: Path) -> None:
    """The real pipeline in bash, with a runner that never ends."""
    (tmp_path / "run_kselftest.sh").write_text(
        "echo '# selftests: kvm: stuck_test'; exec sleep 600\n")
    (tmp_path / "run_kselftest.sh").chmod(0o755)
    t0 = time.monotonic()
    r = subprocess.run(["bash", "-c", run.command(str(tmp_path), ["stuck_test"], budget=2)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in run.BUDGET_RCS and time.monotonic() - t0 < 30
    assert tap.unfinished(r.stdout) == "stuck_test"


def test_the_stamper_stamps_every_line_in_bash() -> None:
    cmd = run.command("/", ["x"]).split(" | ", 1)[1]
    assert cmd == tap.STAMPER
    out = subprocess.run(["bash", "-c", f"printf 'a b\\n  c\\n' | {cmd}"],
                         capture_output=True, text=True, check=True).stdout
    stamps = [line.split(" ", 1) for line in out.splitlines()]
    assert [rest for _, rest in stamps] == ["a b", "  c"]
    assert all(abs(int(t) - time.time()) < 60 for t, _ in stamps)


def test_plan_gives_base_failures_the_short_limit() -> None:
    base = {"a": "pass", "b": "fail", "c": "skip"}
    p = run.plan(["a", "b", "c", "new_test"], base)
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
def installed(tmp_path: Path) -> Path:
    (tmp_path / "kselftest-list.txt").write_text(
        "kvm:cpuid_test\nkvm:dirty_log_test\nkvm:iofd_test\nkvm:steal_time\n")
    return tmp_path


def test_planned_run_is_two_bounded_runs(installed: Path) -> None:
    base = {"cpuid_test": "pass", "dirty_log_test": "fail", "steal_time": "pass"}
    guest = FakeGuest((STAMPED, run.BUDGET_RCS[0]),
                      ("  PID STAT ELAPSED WCHAN ARGS\n  42 D 900 kvm_vcpu_block ./iofd_test\n", 0),
                      ("9 not ok 1 selftests: kvm: dirty_log_test # TIMEOUT 30 seconds\n", 0))
    done = run.run_planned(guest, installed, base, budget=1000, slowdown=1)  # type: ignore[arg-type]
    (full, full_limit), (ps, _), (short, short_limit) = guest.commands
    assert ps == run.LEFT_OVER
    assert "-t kvm:cpuid_test -t kvm:iofd_test -t kvm:steal_time 2>&1" in full
    assert f"-t kvm:dirty_log_test -o {run.KNOWN_FAILING_TIMEOUT}" in short
    short_budget = 1 * (run.KNOWN_FAILING_TIMEOUT + 15) + 60
    assert f"timeout -k 30 {short_budget} " in short
    assert f"timeout -k 30 {1000 - short_budget} " in full
    assert full_limit > 1000 - short_budget and short_limit > short_budget  # the guest's own first
    assert done.overran is not None and "in iofd_test" in done.overran
    assert "42 D 900 kvm_vcpu_block ./iofd_test" in done.overran
    assert done.results["dirty_log_test"] == "fail"
    # steal_time never ran: a regression, not silently absent.
    assert run.regressions(base, done.results) == ["steal_time"]


def test_a_run_of_nothing_runs_nothing(installed: Path) -> None:
    guest = FakeGuest()
    done = run.run(guest, installed, ["not_installed"])  # type: ignore[arg-type]
    assert done.results == {} and guest.commands == []


def test_available_reads_the_install_list(installed: Path) -> None:
    assert run.available(installed)[:2] == ["cpuid_test", "dirty_log_test"]


def test_a_slower_kernel_gets_longer_limits(installed: Path) -> None:
    assert run.limit(installed, 1) is None  # the runner's own limits stand
    assert run.limit(installed, 3) == 3 * run.RUNNER_DEFAULT_TIMEOUT
    (Path(installed) / "kvm").mkdir()
    (Path(installed) / "kvm" / "settings").write_text("# limit\ntimeout=120\n")
    assert run.limit(installed, flavours.get("debug").limit_multiplier) == 360


def test_a_regression_is_rerun_alone_three_times_with_its_normal_limit(installed: Path) -> None:
    """cpuid_test passes all three reruns (forgiven); steal_time fails its
    second, which blames it without a third."""
    guest = FakeGuest(*[("1 ok 1 selftests: kvm: cpuid_test\n", 0)] * 3,
                      ("1 ok 1 selftests: kvm: steal_time\n", 0),
                      ("1 not ok 1 selftests: kvm: steal_time # exit=1\n", 0))
    assert run.confirm(guest, installed, ["cpuid_test", "steal_time"], 1) == ["steal_time"]  # type: ignore[arg-type]
    assert guest.answers == [] and len(guest.commands) == 3 + 2
    normal = run.RUNNER_DEFAULT_TIMEOUT
    assert all(f"-o {normal} " in cmd and f"timeout -k 30 {normal + 120} " in cmd
               for cmd, _ in guest.commands)


# -- the verdict both the CLI and the VM suite report -------------------------

BASE = {"cpuid_test": "pass", "dirty_log_test": "fail", "steal_time": "pass"}
# The series' own tests, passing (every verdict on the patched kernel requires them).
SERIES_PASS = ("8 ok 8 selftests: kvm: iofd_test\n"
               "9 ok 9 selftests: kvm: io_bus_lookup_test\n")


def test_a_verdict_counts_only_regressions_that_fail_again_alone(installed: Path) -> None:
    guest = FakeGuest(("1 not ok 1 selftests: kvm: cpuid_test # exit=1\n"
                       "2 ok 2 selftests: kvm: iofd_test\n"
                       "3 not ok 3 selftests: kvm: steal_time # exit=1\n", 0),
                      ("4 not ok 1 selftests: kvm: dirty_log_test # TIMEOUT 30 seconds\n", 0),
                      *[("5 ok 1 selftests: kvm: cpuid_test\n", 0)] * run.RERUNS,
                      ("6 not ok 1 selftests: kvm: steal_time # exit=1\n", 0))
    v = run.verdict(guest, installed, BASE, budget=1000, slowdown=3,  # type: ignore[arg-type]
                          baseline="kvm-selftests-baseline-tcg-svm-debug.txt")
    assert (v.regressions, v.flaky) == (["steal_time"], ["cpuid_test"])
    full, _, *alone = [cmd for cmd, _ in guest.commands]
    normal = 3 * run.RUNNER_DEFAULT_TIMEOUT
    assert f"-o {normal} " in full  # the slowdown reaches each limit
    assert all(f"-o {normal} " in cmd for cmd in alone) and len(alone) == run.RERUNS + 1
    error = v.error()
    assert error is not None and error.what.endswith("with the normal limit): steal_time")
    assert f"{installed}/run_kselftest.sh -t kvm:NAME" in (error.hint or "")
    line = v.summary("6.12-iofd")
    assert line.startswith("KVM selftests on 6.12-iofd: 1 pass, 3 fail, 0 skip (4 run; base "
                           "(kvm-selftests-baseline-tcg-svm-debug.txt): "
                           "{'pass': 2, 'fail': 1, 'skip': 0})")
    assert line.endswith("(flaky here, not counted): cpuid_test")


def test_a_clean_verdict_has_no_error(installed: Path) -> None:
    guest = FakeGuest(("1 ok 1 selftests: kvm: cpuid_test\n1 ok 2 selftests: kvm: steal_time\n"
                       + SERIES_PASS, 0),
                      ("1 not ok 1 selftests: kvm: dirty_log_test\n", 0))
    v = run.verdict(guest, installed, BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert v.error() is None and v.regressions == v.flaky == []
    assert len(guest.commands) == 2  # nothing to confirm
    assert "flaky" not in v.summary("r")


def test_an_overrun_fails_the_verdict_without_confirming(installed: Path) -> None:
    guest = FakeGuest((STAMPED, run.BUDGET_RCS[0]), ("  PID STAT\n", 0),
                      ("9 not ok 1 selftests: kvm: dirty_log_test\n", 0))
    v = run.verdict(guest, installed, BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert len(guest.commands) == 3 and v.regressions == []  # steal_time is not rerun
    error = v.error()
    assert error is not None and "in iofd_test" in error.what and "budget" in (error.hint or "")


def test_a_run_that_reports_nothing_fails_the_verdict(installed: Path) -> None:
    guest = FakeGuest(("bash: ./run_kselftest.sh: No such file or directory\n", 0),
                      ("", 0))
    v = run.verdict(guest, installed, BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert len(guest.commands) == 2  # no base pass is rerun alone
    error = v.error()
    assert error is not None and error.what == "the kselftest runner reported nothing"
    assert "No such file" in (error.hint or "")


def test_recording_the_baseline_runs_every_test_with_the_runners_limits(installed: Path) -> None:
    guest = FakeGuest((TAP, 0))
    v = run.verdict(guest, installed, {}, budget=1000, slowdown=1, required=())  # type: ignore[arg-type]
    [(cmd, _)] = guest.commands
    assert "./run_kselftest.sh -c kvm 2>&1" in cmd  # all, and no -o override
    assert v.error() is None  # its failures are what the baseline records
    assert "base:" not in v.summary("r") and v.run.results["dirty_log_test"] == "fail"


TCG_SVM = baseline.Environment("tcg", "svm", "default")


def test_a_listed_flaky_test_is_reported_not_counted(installed: Path) -> None:
    """Failing in the run and again alone fails the verdict, unless the test is
    in the flaky list (and flaked as listed: a rerun passed, each failure
    showed its assertion); then the summary names it and nothing else changes."""
    run_out = ("1 ok 1 selftests: kvm: cpuid_test\n"
               "2 # selftests: kvm: steal_time\n2 #   steal_time.c:7: seen\n"
               "2 not ok 2 selftests: kvm: steal_time # exit=1\n" + SERIES_PASS)
    alone = ("3 # selftests: kvm: steal_time\n3 #   steal_time.c:7: seen\n"
             "3 not ok 1 selftests: kvm: steal_time # exit=1\n", 0)
    passes = ("4 ok 1 selftests: kvm: steal_time\n", 0)
    base = {"cpuid_test": "pass", "steal_time": "pass"}
    listed = run.verdict(FakeGuest((run_out, 0), alone, passes), installed, base, budget=1000,
                         slowdown=1, known_flaky={"steal_time": "steal_time.c:7"})  # type: ignore[arg-type]
    assert listed.error() is None and listed.excused == ["steal_time"]
    assert "listed in" in listed.summary("r") and "steal_time" in listed.summary("r")
    unlisted = run.verdict(FakeGuest((run_out, 0), alone), installed, base, budget=1000,
                           slowdown=1, known_flaky={"other": "other.c:1"})  # type: ignore[arg-type]
    assert unlisted.error() is not None and unlisted.regressions == ["steal_time"]


def test_only_a_failure_on_the_base_in_the_same_environment_excuses(tmp_path: Path) -> None:
    flaky = tmp_path / "flaky.txt"
    flaky.write_text("# NAME ENVIRONMENT DATE base|patched ASSERTION EVIDENCE\n"
                     "a_test tcg-svm-default 2026-11-30 base x86_64/a_test.c:42 failed on "
                     "6.12.117-base in make test\n"
                     "b_test tcg-svm-default 2026-11-30 patched b_test.c:1 failed with the series only\n"
                     "c_test kvm-vmx-default 2026-11-30 base c_test.c:3 failed on 6.12.117-base on a "
                     "runner\n")
    flakes = baseline.load_flaky(flaky)
    assert flakes[0].evidence == "failed on 6.12.117-base in make test"
    assert baseline.excusable(flakes, TCG_SVM) == {"a_test": "x86_64/a_test.c:42"}
    assert list(baseline.excusable(flakes, baseline.Environment("kvm", "vmx", "default"))) == [
        "c_test"]
    flaky.write_text("d_test tcg-svm-default 2026-11-30 failed once\n")  # no base|patched
    with pytest.raises(HarnessError, match="cannot read"):
        baseline.load_flaky(flaky)
    flaky.write_text("e_test tcg-svm-default 2026-11-30 base failed on the base\n")  # no assertion
    with pytest.raises(HarnessError, match="cannot read"):
        baseline.load_flaky(flaky)


def test_the_flaky_list_gives_evidence_for_each_test() -> None:
    """Each entry names a real environment, a date that has been, and
    evidence; its test is one its environment's baseline knows."""
    flaky = baseline.load_flaky()
    assert flaky, "an empty list: delete the file instead"
    for entry in flaky:
        assert len(entry.evidence) > 40 and entry.date <= datetime.date.today()
        env = baseline.Environment.parse(entry.env)
        path = baseline.path(env)
        if path.exists():
            assert entry.name in baseline.load(path, env), f"{entry.name}: not in {path.name}"
        assert entry.excuses(env) == (entry.on == "base")


# -- one baseline per environment ----------------------------------------------

SVM_BASE = {"svm_vmcall_test": "pass", "vmx_msrs_test": "skip", "cpuid_test": "pass"}
VMX_BASE = {"svm_vmcall_test": "skip", "vmx_msrs_test": "pass", "cpuid_test": "pass"}


class CpuGuest(FakeGuest):
    """A machine whose /proc/cpuinfo shows *vendor*; other commands get the canned answers."""

    label = "fake"

    def __init__(self, vendor: str, *answers: tuple[str, int]) -> None:
        super().__init__(*answers)
        self.vendor = vendor

    def run(self, cmd: str, timeout: float = 600.0, env: dict[str, str] | None = None, *,
            what: str | None = None) -> Result:
        if cmd == baseline.VENDOR_COMMAND:
            return Result(f"{self.vendor}\n" if self.vendor else "", "", 0 if self.vendor else 1)
        return super().run(cmd, timeout, env, what=what)


def write_baseline(directory: Path, env: baseline.Environment, results: dict[str, str]) -> Path:
    path = baseline.path(env, directory)
    path.write_text(baseline.header(env, "6.12.117-base") + baseline.dump(results))
    return path


def no_recording(env: baseline.Environment, path: Path) -> None:
    raise AssertionError(f"recorded {path.name} though it exists")


def test_the_environment_is_named_by_accelerator_vendor_and_flavour() -> None:
    assert baseline.environment(CpuGuest("vmx"), "kvm", "debug").name == "kvm-vmx-debug"  # type: ignore[arg-type]
    assert baseline.environment(CpuGuest("svm"), "tcg", "default") == TCG_SVM  # type: ignore[arg-type]
    assert baseline.Environment.parse("kvm-vmx-base-debug") == baseline.Environment(
        "kvm", "vmx", "base-debug")
    with pytest.raises(HarnessError, match="neither vmx nor svm"):
        baseline.environment(CpuGuest(""), "kvm", "default")  # type: ignore[arg-type]
    with pytest.raises(HarnessError, match="not an environment"):
        baseline.Environment.parse("tcg-default")


def test_the_existing_baseline_is_tcg_svm_default() -> None:
    """The one recorded here (under TCG, AMD SVM, the default flavour) is
    named so and says so; the SVM tests pass in it, the VMX ones skip."""
    path = baseline.path(TCG_SVM)
    base = baseline.load(path, TCG_SVM)
    assert path.name == "kvm-selftests-baseline-tcg-svm-default.txt"
    assert base["svm_vmcall_test"] == "pass" and base["vmx_msrs_test"] == "skip"
    assert not (baseline.DIRECTORY / "kvm-selftests-baseline.txt").exists()


def test_a_vmx_machine_picks_the_vmx_baseline(tmp_path: Path) -> None:
    svm = baseline.environment(CpuGuest("svm"), "kvm", "default")  # type: ignore[arg-type]
    vmx = baseline.environment(CpuGuest("vmx"), "kvm", "default")  # type: ignore[arg-type]
    write_baseline(tmp_path, svm, SVM_BASE)
    write_baseline(tmp_path, vmx, VMX_BASE)
    assert baseline.load_or_record(vmx, no_recording, tmp_path) == (
        VMX_BASE, tmp_path / "kvm-selftests-baseline-kvm-vmx-default.txt")
    assert baseline.load_or_record(svm, no_recording, tmp_path)[0] == SVM_BASE


def test_a_missing_baseline_is_recorded_not_borrowed(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Only the SVM baseline exists; a VMX run records its own on the base and
    is judged against that, and the SVM file is left as it was."""
    svm_file = write_baseline(tmp_path, baseline.Environment("kvm", "svm", "default"), SVM_BASE)
    before = svm_file.read_text()
    vmx = baseline.Environment("kvm", "vmx", "default")
    recorded: list[tuple[baseline.Environment, Path]] = []

    def record(env: baseline.Environment, path: Path) -> None:
        recorded.append((env, path))
        write_baseline(path.parent, env, VMX_BASE)

    base, path = baseline.load_or_record(vmx, record, tmp_path)
    assert recorded == [(vmx, tmp_path / "kvm-selftests-baseline-kvm-vmx-default.txt")]
    assert (base, path) == (VMX_BASE, recorded[0][1]) and svm_file.read_text() == before
    said = capsys.readouterr().err
    assert "no KVM selftest baseline for KVM, Intel VMX, default flavour" in said
    assert "recording one on the unpatched base" in said

    def record_nothing(env: baseline.Environment, path: Path) -> None:
        pass

    with pytest.raises(HarnessError, match="did not write"):
        baseline.load_or_record(baseline.Environment("tcg", "vmx", "default"), record_nothing,
                               tmp_path)


def test_a_baseline_copied_to_another_environment_is_refused(tmp_path: Path) -> None:
    svm = baseline.Environment("kvm", "svm", "default")
    vmx = baseline.Environment("kvm", "vmx", "default")
    baseline.path(vmx, tmp_path).write_text(
        write_baseline(tmp_path, svm, SVM_BASE).read_text())
    with pytest.raises(HarnessError, match="recorded in kvm-svm-default, not kvm-vmx-default"):
        baseline.load_or_record(vmx, no_recording, tmp_path)


# -- recording on the unpatched base, with a fake build and a fake VM ------------

def settings_for(tmp_path: Path, flavour: str) -> Settings:
    return Settings(cache=tmp_path / "cache", kernel_src=None, jobs=1, accel=None,
                    flavour=flavours.get(flavour))


class FakeBase:
    """A build that records what it was asked to build, and a VM of it."""

    def __init__(self, installed: Path, guest: CpuGuest) -> None:
        self.installed = installed
        self.guest = guest
        self.built: list[Settings] = []
        self.booted: list[Path] = []

    def build(self, cfg: Settings) -> Kernel:
        self.built.append(cfg)
        name = cfg.flavour.name
        return Kernel(flavour=name, tree=Path(f"/cache/linux-{name}"), bzimage=Path("bz"),
                      release="6.12.117-base", series="base", doorbell_ko=Path("doorbell.ko"),
                      headers=Path("usr"), selftests=Path("kvm"), kselftests=self.installed)

    @contextmanager
    def boot(self, cfg: Settings, kernel: Kernel) -> Iterator[CpuGuest]:
        self.booted.append(kernel.tree)
        yield self.guest


def test_recording_builds_and_boots_the_base_and_writes_the_file(tmp_path: Path,
                                                                installed: Path) -> None:
    fake = FakeBase(installed, CpuGuest("vmx", (TAP, 0)))
    env = baseline.Environment("kvm", "vmx", "default")
    path = tmp_path / "baseline.txt"
    run.record_on_base(settings_for(tmp_path, "default"), env, path, budget=600,
                             build=fake.build, boot_vm=fake.boot)  # type: ignore[arg-type]
    [cfg] = fake.built
    assert cfg.flavour is flavours.get("base") and not cfg.flavour.patched
    assert cfg.accel == "kvm"  # the patched run's accelerator, not a new probe
    assert fake.booted == [Path("/cache/linux-base")]
    [(cmd, _)] = fake.guest.commands
    assert "./run_kselftest.sh -c kvm 2>&1" in cmd and "timeout -k 30 600 " in cmd
    assert baseline.load(path, env) == tap.parse(TAP)
    assert "# environment: kvm-vmx-default (KVM, Intel VMX, default flavour)" in path.read_text()


def test_the_debug_flavours_base_is_the_debug_kernel_without_the_series(tmp_path: Path,
                                                                       installed: Path) -> None:
    fake = FakeBase(installed, CpuGuest("svm", (TAP, 0)))
    env = baseline.Environment("tcg", "svm", "debug")
    run.record_on_base(settings_for(tmp_path, "debug"), env, tmp_path / "b.txt",
                             budget=600, build=fake.build, boot_vm=fake.boot)  # type: ignore[arg-type]
    flavour = fake.built[0].flavour
    debug = flavours.get("debug")
    assert (flavour.name, flavour.patched, flavour.tree_suffix) == ("base-debug", False,
                                                                    "-base-debug")
    assert (flavour.fragments, flavour.append, flavour.memory) == (debug.fragments, debug.append,
                                                                   debug.memory)
    [(cmd, _)] = fake.guest.commands
    assert f"timeout -k 30 {600 * debug.limit_multiplier} " in cmd
    assert f"-o {3 * run.RUNNER_DEFAULT_TIMEOUT}" in cmd


def test_a_base_in_another_environment_records_nothing(tmp_path: Path, installed: Path) -> None:
    fake = FakeBase(installed, CpuGuest("svm", (TAP, 0)))
    path = tmp_path / "b.txt"
    with pytest.raises(HarnessError, match="the base booted in kvm-svm-default, not kvm-vmx"):
        run.record_on_base(settings_for(tmp_path, "default"),
                                 baseline.Environment("kvm", "vmx", "default"), path,
                                 build=fake.build, boot_vm=fake.boot)  # type: ignore[arg-type]
    assert not path.exists() and fake.guest.commands == []


def test_a_base_run_that_reports_nothing_records_nothing(tmp_path: Path, installed: Path) -> None:
    fake = FakeBase(installed, CpuGuest("svm", ("bash: ./run_kselftest.sh: not found\n", 127)))
    path = tmp_path / "b.txt"
    with pytest.raises(HarnessError, match="reported nothing"):
        run.record_on_base(settings_for(tmp_path, "default"), TCG_SVM, path,
                                 build=fake.build, boot_vm=fake.boot)  # type: ignore[arg-type]
    assert not path.exists()


# -- skipped on the base, failing now -------------------------------------------

def test_a_test_that_skipped_on_the_base_and_fails_now_fails_the_verdict(installed: Path) -> None:
    base = {"cpuid_test": "pass", "steal_time": "skip", "iofd_test": "skip"}
    guest = FakeGuest(("1 ok 1 selftests: kvm: cpuid_test\n"
                       "2 ok 2 selftests: kvm: iofd_test # SKIP\n"
                       "3 not ok 3 selftests: kvm: steal_time # exit=1\n", 0))
    v = run.verdict(guest, installed, base, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert v.newly_failing == ["steal_time"] and v.regressions == []
    error = v.error()
    assert error is not None and error.what == ("skipped on the base, failing with the series: "
                                                "steal_time")
    assert run.newly_failing(base, {"steal_time": "pass", "iofd_test": "skip"}) == []


# -- the flake policy against a racy fake runner ----------------------------------

class RacyRunner:
    """A kselftest runner in which *racy* fails on the runs *fails* says
    (one bool per run of it, in order) and every other test passes."""

    label = "fake"

    def __init__(self, racy: str, fails: list[bool], slower: bool = False) -> None:
        self.racy, self.fails, self.slower = racy, list(fails), slower
        self.commands: list[str] = []

    def run(self, cmd: str, timeout: float = 600.0, env: dict[str, str] | None = None, *,
            what: str | None = None) -> Result:
        self.commands.append(cmd)
        names = re.findall(r"-t kvm:(\S+)", cmd)
        limit = re.search(r" -o (\d+) ", cmd)
        out = []
        for i, name in enumerate(names, 1):
            if name != self.racy:
                failed = False
            elif self.slower:  # needs 1.5 times the runner's limit (-o, else its own)
                given = int(limit.group(1)) if limit else run.RUNNER_DEFAULT_TIMEOUT
                failed = given < 1.5 * run.RUNNER_DEFAULT_TIMEOUT
            else:
                failed = self.fails.pop(0)
            out.append(f"{i} {'not ok' if failed else 'ok'} {i} selftests: kvm: {name}")
        return Result("\n".join(out) + "\n", "", 0)


RACY_BASE = {"cpuid_test": "pass", "iofd_test": "pass", "steal_time": "pass", "dirty_log_test": "pass"}


def test_a_race_failing_one_time_in_four_is_blamed_on_the_series(installed: Path) -> None:
    """steal_time fails independently, one run in four.  Once it has failed
    in the run, every way the three reruns can go is judged by the real
    verdict: the series is blamed whenever a rerun fails, which for this race
    is 1 - (3/4)^3 = 37/64 of the time (the old single rerun: 1/4)."""
    p_fail = Fraction(1, 4)
    blamed, seen = Fraction(0), Fraction(0)
    for reruns in itertools.product([True, False], repeat=run.RERUNS):
        runner = RacyRunner("steal_time", [True, *reruns])
        v = run.verdict(runner, installed, RACY_BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
        assert (v.regressions == ["steal_time"]) == any(reruns)
        assert (v.flaky == ["steal_time"]) == (not any(reruns))
        alone = runner.commands[1:]
        assert len(alone) == (reruns.index(True) + 1 if any(reruns) else run.RERUNS)
        assert all(f"-t kvm:steal_time -o {run.RUNNER_DEFAULT_TIMEOUT} " in c for c in alone)
        weight = math.prod(p_fail if f else 1 - p_fail for f in reruns)
        seen += weight
        blamed += weight if v.regressions else 0
    assert seen == 1 and blamed == 1 - (1 - p_fail) ** run.RERUNS == Fraction(37, 64)


def test_a_fake_runner_failing_one_time_in_four_gets_the_series_blamed(installed: Path) -> None:
    """The same race as a seeded random runner, 400 series runs: those in
    which it showed are blamed in the proportion above, not let through."""
    rng = random.Random(17)
    shown = blamed = 0
    for _ in range(400):
        runner = RacyRunner("steal_time", [rng.random() < 0.25 for _ in range(1 + run.RERUNS)])
        v = run.verdict(runner, installed, RACY_BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
        shown += bool(v.regressions or v.flaky)
        blamed += bool(v.regressions)
    assert 60 < shown < 140 and 0.45 < blamed / shown < 0.72


def test_a_test_the_series_slowed_down_is_blamed(installed: Path) -> None:
    """It now needs 1.5 times its limit: twice the limit passed it before;
    the normal limit fails it in every rerun."""
    runner = RacyRunner("steal_time", [], slower=True)
    v = run.verdict(runner, installed, RACY_BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]
    assert v.regressions == ["steal_time"] and v.error() is not None


# -- the two verdict bugs of issue 21 ------------------------------------------------

XAPIC_BASE = {"cpuid_test": "pass", "xapic_ipi_test": "pass"}
XAPIC_ASSERT = "xapic_ipi_test.c:211"


def xapic(failed: bool, assertion: str = XAPIC_ASSERT) -> str:
    """One stamped run of xapic_ipi_test: its GUEST_ASSERT, or a pass."""
    if not failed:
        return "1 # selftests: kvm: xapic_ipi_test\n2 ok 1 selftests: kvm: xapic_ipi_test\n"
    return ("1 # selftests: kvm: xapic_ipi_test\n"
            "2 # ==== Test Assertion Failure ====\n"
            f"2 #   x86_64/{assertion}: false\n"
            "2 #   pid=1 tid=2 errno=4 - Interrupted system call\n"
            "2 #   vCPU 1 exited with error: (ipis_rcvd != last_ipis_rcvd_count) && ...\n"
            "3 not ok 1 selftests: kvm: xapic_ipi_test # exit=254\n")


@pytest.fixture
def xapic_installed(tmp_path: Path) -> Path:
    (tmp_path / "kselftest-list.txt").write_text(
        "kvm:cpuid_test\nkvm:xapic_ipi_test\nkvm:iofd_test\nkvm:io_bus_lookup_test\n")
    return tmp_path


def xapic_verdict(installed: Path, reruns: list[bool], assertion: str = XAPIC_ASSERT) -> run.Verdict:
    """xapic_ipi_test fails the run with *assertion*, then its reruns go as
    *reruns* says (True: failed with *assertion*); it is listed as flaky
    with the assertion of the real flake."""
    run_out = "1 ok 1 selftests: kvm: cpuid_test\n" + xapic(True, assertion) + SERIES_PASS
    guest = FakeGuest((run_out, 0), *[(xapic(f, assertion), 0) for f in reruns])
    return run.verdict(guest, installed, XAPIC_BASE, budget=1000, slowdown=1,  # type: ignore[arg-type]
                             known_flaky={"xapic_ipi_test": XAPIC_ASSERT})


def test_a_listed_test_failing_every_rerun_is_blamed(xapic_installed: Path) -> None:
    """The list excuses a flake, not a test that no longer passes at all."""
    v = xapic_verdict(xapic_installed, [True] * run.RERUNS)
    assert v.excused == [] and v.regressions == ["xapic_ipi_test"]
    error = v.error()
    assert error is not None and error.what.endswith(": xapic_ipi_test")


def test_a_listed_test_is_excused_when_a_rerun_passes_and_it_failed_as_listed(
        xapic_installed: Path) -> None:
    v = xapic_verdict(xapic_installed, [True, False])
    assert (v.excused, v.regressions) == (["xapic_ipi_test"], [])
    assert v.error() is None


def test_a_listed_test_failing_another_way_is_blamed(xapic_installed: Path) -> None:
    """A rerun passes, but the failure is not the listed assertion: not that flake."""
    v = xapic_verdict(xapic_installed, [True, False], assertion="xapic_ipi_test.c:99")
    assert v.excused == [] and v.regressions == ["xapic_ipi_test"]
    assert v.error() is not None


def series_verdict(installed: Path, series_out: str) -> run.Verdict:
    """A run against a base that lacks the series' own tests (as every base does)."""
    guest = FakeGuest(("1 ok 1 selftests: kvm: cpuid_test\n"
                       "2 ok 2 selftests: kvm: xapic_ipi_test\n" + series_out, 0))
    return run.verdict(guest, installed, XAPIC_BASE, budget=1000, slowdown=1)  # type: ignore[arg-type]


def test_the_series_own_tests_must_pass(xapic_installed: Path) -> None:
    assert series_verdict(xapic_installed, SERIES_PASS).error() is None
    failing = series_verdict(xapic_installed, "8 not ok 8 selftests: kvm: iofd_test # exit=1\n"
                                              "9 ok 9 selftests: kvm: io_bus_lookup_test\n")
    error = failing.error()
    assert error is not None and "iofd_test" in error.what and "io_bus_lookup" not in error.what
    skipped = series_verdict(xapic_installed, "8 ok 8 selftests: kvm: iofd_test\n"
                                              "9 ok 9 selftests: kvm: io_bus_lookup_test # SKIP\n")
    error = skipped.error()
    assert error is not None and "io_bus_lookup_test" in error.what


def test_a_series_test_dropped_from_the_makefile_fails_the_run(tmp_path: Path) -> None:
    """Not installed, so not run: that is a failure, not nothing to judge."""
    (tmp_path / "kselftest-list.txt").write_text("kvm:cpuid_test\nkvm:xapic_ipi_test\n"
                                                 "kvm:iofd_test\n")
    v = series_verdict(tmp_path, "8 ok 8 selftests: kvm: iofd_test\n")
    error = v.error()
    assert error is not None and "io_bus_lookup_test" in error.what


def test_the_series_tests_are_the_ones_the_series_adds_to_the_makefile() -> None:
    """SERIES_TESTS names what kernel-patch/ adds to the selftests' Makefile:
    a test added there and not here would go unrequired."""
    added = {m.group(1) for p in paths.KERNEL_PATCH_DIR.glob("*.patch")
             for m in re.finditer(r"^\+TEST_GEN_PROGS_x86 \+= x86/(\S+)$", p.read_text(),
                                  re.MULTILINE)}
    assert added == set(run.SERIES_TESTS)
    assert run.series_tests(flavours.get("default")) == run.SERIES_TESTS
    assert run.series_tests(flavours.get("base")) == ()


def test_a_tests_output_is_found_among_the_others() -> None:
    both = ("1 # selftests: kvm: a_test\n1 # a.c:1: a failed\n1 not ok 1 selftests: kvm: a_test\n"
            "2 # selftests: kvm: b_test\n2 # b.c:2: b failed\n2 not ok 2 selftests: kvm: b_test\n")
    assert "a.c:1" in tap.output(both, "a_test") and "b.c:2" not in tap.output(both, "a_test")
    assert tap.output(both, "b_test").splitlines()[-1].endswith("not ok 2 selftests: kvm: b_test")
    assert tap.output("3 not ok 1 selftests: kvm: c_test\n", "c_test") != ""
    assert tap.output(both, "other_test") == ""


def test_recording_again_finds_the_environment_the_base_boots_in(tmp_path: Path,
                                                                  installed: Path) -> None:
    """``kselftests --baseline``: no environment given; the one the base runs
    in names the file, under the accelerator the settings force."""
    fake = FakeBase(installed, CpuGuest("vmx", (TAP, 0)))
    cfg = dataclasses.replace(settings_for(tmp_path, "default"), accel="kvm")
    _, written = run.record_on_base(cfg, budget=600, build=fake.build, boot_vm=fake.boot,  # type: ignore[arg-type]
                                    directory=tmp_path)
    env = baseline.Environment("kvm", "vmx", "default")
    assert written == baseline.path(env, tmp_path)
    assert baseline.load(written, env) == tap.parse(TAP)
    assert fake.built[0].flavour is flavours.get("base") and fake.built[0].accel == "kvm"


def test_the_listed_xapic_flake_is_the_assertion_its_failures_report() -> None:
    """The flaky list's assertion for xapic_ipi_test is the one the test's
    failure report names (a list naming another line would excuse nothing)."""
    [entry] = [f for f in baseline.load_flaky() if f.name == "xapic_ipi_test"]
    assert entry.assertion == XAPIC_ASSERT
