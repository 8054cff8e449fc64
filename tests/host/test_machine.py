"""What runs on a Machine, written once for the VM and SSH hosts, against a
fake machine: a temp directory whose commands run with bash here."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import junit
from harness.bench.measure import RAW, measure
from harness.errors import HarnessError
from harness.machine import Machine, Result, env_command, run_pytest
from payload.vmexit.checks import CountMismatch


class FakeMachine:
    """A :class:`Machine` in *root*: commands run with bash here, files are
    copies, and ``python -m`` runs in *root*, so a module written there
    stands in for the payload's."""

    label = "fake"

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "scratch").mkdir()
        self.runs: list[tuple[str, float, str | None]] = []

    @property
    def scratch(self) -> str:
        return str(self.root / "scratch")

    def run(self, cmd: str, timeout: float = 600.0, env: dict[str, str] | None = None, *,
            what: str | None = None) -> Result:
        self.runs.append((cmd, timeout, what))
        p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **(env or {})})
        return Result(p.stdout, p.stderr, p.returncode)

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def python(self, module_and_args: str, env: dict[str, str] | None = None) -> str:
        return env_command(str(self.root), env or {},
                           f"{shlex.quote(sys.executable)} -m {module_and_args}")

    def failure(self, what: str, rc: int, detail: str) -> HarnessError:
        return HarnessError(f"{self.label}: {what} (exit {rc})", detail.strip()[-500:] or None)


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    root = tmp_path / "machine"
    root.mkdir()
    return FakeMachine(root)


def test_the_fake_is_a_machine(machine: FakeMachine) -> None:
    assert isinstance(machine, Machine)
    assert not isinstance(object(), Machine)


# -- the benchmark ------------------------------------------------------------

RUNNER = """\
import argparse, json, sys
p = argparse.ArgumentParser()
for a in ("--iterations", "--trials"):
    p.add_argument(a, type=int, required=True)
p.add_argument("--out", required=True)
args = p.parse_args()
print("runner: 1 mode x 1 trial", file=sys.stderr)
if {rc} == 2:
    print("error: no KVM_CAP_IOFD on this kernel", file=sys.stderr)
    sys.exit(2)
with open(args.out, "w") as f:
    json.dump({{"n": args.iterations, "trials": args.trials, "problems": {problems!r}}}, f)
sys.exit({rc})
"""


def fake_runner(machine: FakeMachine, rc: int, problems: tuple[str, ...] = ()) -> None:
    """Put a runner that exits *rc* where ``-m payload.vmexit.runner`` finds it
    first (a package, so that the real one cannot win)."""
    pkg = machine.root / "payload" / "vmexit"
    pkg.mkdir(parents=True)
    (machine.root / "payload" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "runner.py").write_text(RUNNER.format(rc=rc, problems=list(problems)))


def test_measure_returns_the_raw_data_fetched_here(machine: FakeMachine, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake_runner(machine, 0)
    raw = tmp_path / "out" / RAW
    raw.parent.mkdir()
    data = measure(machine, 7, 3, raw, timeout=99.0)
    assert data == {"n": 7, "trials": 3, "problems": []}
    assert json.loads(raw.read_text()) == data
    assert (machine.root / "scratch" / RAW).exists()  # written there, fetched here
    [(_, timeout, what)] = machine.runs
    assert (timeout, what) == (99.0, "the benchmark")
    assert "fake: runner: 1 mode x 1 trial" in capsys.readouterr().err


def test_measure_leaves_the_verdict_to_the_host(machine: FakeMachine, tmp_path: Path) -> None:
    """The runner makes no verdict: measure returns what it wrote, unjudged
    (payload.vmexit.checks.verify judges it once, in summarize), and keeps it."""
    fake_runner(machine, 0, ("cpuid trial 0: kvm_runs 3, want 4",))
    data = measure(machine, 5, 1, tmp_path / RAW, timeout=60.0)
    assert data["problems"] == ["cpuid trial 0: kvm_runs 3, want 4"]
    assert (tmp_path / RAW).exists()


def test_an_exit_1_is_a_failure_of_the_run_not_a_verdict(machine: FakeMachine,
                                                         tmp_path: Path) -> None:
    fake_runner(machine, 1)
    with pytest.raises(HarnessError, match=r"^fake: the benchmark runner failed \(exit 1\)") as e:
        measure(machine, 5, 1, tmp_path / RAW, timeout=60.0)
    assert not isinstance(e.value, CountMismatch)


def test_a_runner_that_fails_otherwise_is_an_error_of_the_run(machine: FakeMachine,
                                                               tmp_path: Path) -> None:
    fake_runner(machine, 2)
    with pytest.raises(HarnessError, match=r"^fake: the benchmark runner failed \(exit 2\)") as e:
        measure(machine, 5, 1, tmp_path / RAW, timeout=60.0)
    assert not isinstance(e.value, CountMismatch)
    assert "no KVM_CAP_IOFD on this kernel" in (e.value.hint or "")
    assert not (tmp_path / RAW).exists()


# -- the payload tests --------------------------------------------------------

PAYLOAD_TESTS = """\
import os
import pytest

def test_passes():
    pass

def test_fails():
    assert False

def test_skips():
    pytest.skip("not here")

def test_knows_the_module():
    assert os.environ["DOORBELL_KO"] == "/lib/a b/doorbell.ko"
"""


def test_pytest_counts_come_from_the_junit_report(machine: FakeMachine, tmp_path: Path) -> None:
    (machine.root / "tests").mkdir()
    (machine.root / "tests" / "test_x.py").write_text(PAYLOAD_TESTS)
    report, log = tmp_path / "junit.xml", tmp_path / "pytest.log"
    done = run_pytest(machine, ["tests/test_x.py"], "/lib/a b/doorbell.ko", report, log, 300.0)
    assert done.counts == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1}
    assert "1 failed, 2 passed, 1 skipped" in done.log
    assert log.read_text() == done.log
    [(cmd, timeout, what)] = machine.runs
    assert (timeout, what) == (300.0, "the guest tests")
    assert f"--junitxml={machine.scratch}/junit.xml" in cmd


def test_pytest_that_cannot_run_the_tests_is_an_error_and_leaves_its_log(
        machine: FakeMachine, tmp_path: Path) -> None:
    report, log = tmp_path / "junit.xml", tmp_path / "pytest.log"
    with pytest.raises(HarnessError, match=r"^fake: pytest could not run the tests \(exit 4\)") as e:
        run_pytest(machine, ["tests/test_missing.py"], "/x.ko", report, log, 60.0)
    assert "test_missing.py" in (e.value.hint or "")
    assert "not found" in log.read_text()
    assert not report.exists()


def test_env_command_quotes_and_passes_the_environment(tmp_path: Path) -> None:
    where = tmp_path / "a dir"
    where.mkdir()
    cmd = env_command(str(where), {"A": "x y", "B": "'q'"}, 'sh -c \'echo "$PWD|$A|$B"\'', "exec ")
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout
    assert out == f"{where}|x y|'q'\n"


def test_a_recorded_summary_reaches_the_vm_suite_summary(tmp_path: Path) -> None:
    """A payload test's ``record_property("summary", ...)`` is in its junit
    report, where the VM suite reads it (real pytest, no VM)."""
    (tmp_path / "test_x.py").write_text(
        "def test_a(record_property):\n"
        "    record_property('summary', '12 cases in 1.0 s')\n"
        "    record_property('other', 'not a summary')\n"
        "def test_b():\n    pass\n")
    report = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", str(tmp_path / "test_x.py")],
                   cwd=tmp_path, check=True, capture_output=True)
    assert junit.summaries(report) == ["12 cases in 1.0 s"]
