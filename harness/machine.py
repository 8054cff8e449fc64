"""One interface to a machine the payload runs on, and what is run there through it.

The payload (the benchmark runner, the tests that drive /dev/kvm) runs
where the patched KVM is: in the test VM, reached through its console
session (:class:`harness.vm.session.Session`), or on a host reached over
SSH (:class:`harness.remote.host.Host`).  Both are a :class:`Machine`, so
what is run there (:func:`run_pytest` here, the benchmark in
:mod:`harness.bench.measure`, the KVM selftests in :mod:`harness.kselftest`)
is written once, and each transport keeps only what truly differs: how a
command travels, how files come back, and how its errors read.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from harness import junit
from harness.errors import HarnessError


@dataclass(frozen=True)
class Result:
    """What a command run on a machine left: its output and exit status."""

    stdout: str
    stderr: str
    rc: int


@runtime_checkable
class Machine(Protocol):
    """Where the payload runs.  Runtime-checkable, so that a test can tell a
    transport that lacks a member."""

    @property
    def label(self) -> str:
        """Names the machine in messages."""
        ...

    @property
    def scratch(self) -> str:
        """A directory there where a job may write files it will :meth:`get`."""
        ...

    def run(self, cmd: str, timeout: float = 600.0, env: dict[str, str] | None = None,
            *, what: str | None = None) -> Result:
        """Run *cmd* in a shell there, with *env* exported; *what* names it in
        the error should it not finish within *timeout* seconds."""
        ...

    def put(self, local: Path, remote: str) -> None:
        """Copy the file *local* here to *remote* there."""
        ...

    def get(self, remote: str, local: Path) -> None:
        """Copy the file *remote* there to *local* here."""
        ...

    def python(self, module_and_args: str, env: dict[str, str] | None = None) -> str:
        """A shell command running ``python -m`` *module_and_args* of the payload
        there, as root, in the payload's directory, with *env* set."""
        ...

    def failure(self, what: str, rc: int, detail: str) -> HarnessError:
        """The error saying that *what* exited with *rc* there; *detail* is its
        output, of which the error shows the end."""
        ...


def env_command(cwd: str, env: dict[str, str], argv: str, prefix: str = "") -> str:
    """*argv* run in *cwd* with *env* set, through ``env`` so that *prefix*
    (``sudo -n``, say) passes it on."""
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"cd {shlex.quote(cwd)} && {prefix}env {assigns} {argv}"


@dataclass(frozen=True)
class PytestRun:
    """A pytest run that produced its JUnit report."""

    counts: dict[str, int]
    """The report's :func:`harness.junit.counts`."""
    log: str
    """pytest's stdout and stderr."""


def run_pytest(machine: Machine, tests: Sequence[str], doorbell_ko: str | Path, report: Path,
               log: Path, timeout: float) -> PytestRun:
    """Run pytest on the payload *tests* there, with ``DOORBELL_KO`` naming
    the module they reload (a path there: the VM's kernel record gives a
    Path, an SSH host's set-up a string).  pytest's output lands in *log* whatever it did,
    its JUnit report in *report*; failing tests are the counts' business,
    pytest failing to run them (exit 2 and up) is an error."""
    remote_report = f"{machine.scratch}/{report.name}"
    args = " ".join(shlex.quote(t) for t in tests)
    r = machine.run(
        machine.python(f"pytest -q -rs -p no:cacheprovider --junitxml={shlex.quote(remote_report)} "
                       f"{args}", env={"DOORBELL_KO": str(doorbell_ko)}),
        timeout, what="the guest tests")
    log.write_text(r.stdout + r.stderr)
    if r.rc not in (0, 1):
        raise machine.failure("pytest could not run the tests", r.rc, r.stdout + r.stderr)
    machine.get(remote_report, report)
    return PytestRun(junit.counts(report), r.stdout + r.stderr)
