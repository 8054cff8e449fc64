"""What the upstream KVM selftests did on the unpatched base, per environment,
and which of them are known to flake there.

Which tests pass, skip or fail on the base depends on where they run: the
accelerator (KVM or TCG), the virtualization extension the VM's own KVM
runs on (a VMX machine skips the SVM tests and runs the ``vmx_*`` ones)
and the kernel flavour (config, limits).  So there is one baseline per
:class:`Environment`, named by it, in this package's directory beside the
code that reads it, and a run is only ever judged against its own
environment's; one that has none records it on the unpatched base first
(:func:`load_or_record`).

:data:`FLAKY` lists tests known to flake in an environment, each with the
assertion its failures show and the evidence for it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.machine import Machine
from harness.progress import say

DIRECTORY = Path(__file__).resolve().parent
FLAKY = DIRECTORY / "kvm-selftests-flaky.txt"
# Which virtualization extension the machine's CPU offers its own KVM.
VENDOR_COMMAND = "grep -m1 -owE 'vmx|svm' /proc/cpuinfo | head -n1"
VENDORS = {"svm": "AMD SVM", "vmx": "Intel VMX"}
ACCELS = {"kvm": "KVM", "tcg": "QEMU TCG"}
_ENV_LINE = re.compile(r"# environment: (?P<name>\S+)")
# Where a selftest's assertion failed, as its "==== Test Assertion Failure ===="
# report names it: the source file and line.
_ASSERTION = re.compile(r"[\w./-]+\.c:\d+")


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


def path(env: Environment, directory: Path = DIRECTORY) -> Path:
    return directory / f"kvm-selftests-baseline-{env.name}.txt"


def dump(results: dict[str, str]) -> str:
    return "".join(f"{name} {status}\n" for name, status in sorted(results.items()))


def header(env: Environment, release: str) -> str:
    """A baseline's first lines: what it was recorded on, and where."""
    return (f"# KVM selftests on the unpatched base {release}, one vCPU, {env.accel}; written by "
            f"the harness ('python -m harness kselftests --baseline' or the VM suite)\n"
            f"# environment: {env.name} ({env.describe()})\n")


def load(file: Path, env: Environment | None = None) -> dict[str, str]:
    """The baseline in *file*; with *env*, only if the file says it was
    recorded there (a file copied to another environment's name is refused)."""
    text = file.read_text()
    if env is not None:
        said = next((m.group("name") for line in text.splitlines()
                     if (m := _ENV_LINE.match(line))), None)
        if said != env.name:
            raise HarnessError(f"{file.name} says it was recorded in {said or 'no environment'}, "
                               f"not {env.name}", "record it again on the base in this environment "
                               "(delete the file; the next run records it)")
    lines = [line.split() for line in text.splitlines()
             if line.strip() and not line.startswith("#")]
    return {name: status for name, status in lines}


def load_or_record(env: Environment, record: Callable[[Environment, Path], None],
                   directory: Path = DIRECTORY) -> tuple[dict[str, str], Path]:
    """*env*'s baseline and its file; when there is none, *record* (the
    recording on the base, :func:`harness.kselftest.run.record_on_base`)
    writes it first.  Never another environment's."""
    file = path(env, directory)
    if not file.exists():
        say(f"no KVM selftest baseline for {env.describe()} ({file.name}): recording one on the "
            "unpatched base now; this builds the base kernel in its own worktree and runs every "
            "selftest on it, which takes long (tens of minutes under TCG)")
        record(env, file)
        if not file.exists():
            raise HarnessError(f"recording the baseline for {env.name} did not write {file}")
        say(f"baseline for {env.name} written to {file}; commit it with the run that made it")
    return load(file, env), file


# -- tests known to flake ----------------------------------------------------

@dataclass(frozen=True)
class Flake:
    """One line of :data:`FLAKY`:
    ``NAME ENVIRONMENT DATE base|patched ASSERTION EVIDENCE``."""

    name: str
    env: str
    date: datetime.date
    on: str
    """"base": it failed on the unpatched base; "patched": only seen with the series."""
    assertion: str
    """Where its failures assert (``FILE.c:LINE``): a failure elsewhere is not this flake."""
    evidence: str

    def excuses(self, env: Environment) -> bool:
        """Only a failure on the unpatched base, in the same environment,
        shows that the test fails without the series."""
        return self.on == "base" and self.env == env.name


def load_flaky(file: Path = FLAKY) -> list[Flake]:
    """Every entry of *file*, checked (a malformed line is an error, not a
    silent pardon)."""
    out = []
    for line in file.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[3] not in ("base", "patched") or not _ASSERTION.fullmatch(parts[4]):
            raise HarnessError(f"{file.name}: cannot read {line[:60]!r}",
                               "lines read NAME ENVIRONMENT YYYY-MM-DD base|patched FILE.c:LINE "
                               "EVIDENCE")
        name, env, date, on, assertion, evidence = parts
        Environment.parse(env)
        out.append(Flake(name, env, datetime.date.fromisoformat(date), on, assertion, evidence))
    return out


def excusable(flakes: list[Flake], env: Environment) -> dict[str, str]:
    """Test name -> the assertion its failure must show, for the entries that
    may excuse a failure in *env*."""
    return {f.name: f.assertion for f in flakes if f.excuses(env)}
