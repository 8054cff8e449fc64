"""The VM suite: one boot of the patched kernel, shared by every test.

The kernel is the one ``make build`` (or ``make test``) built; the fixture
does not run make, so pytest starts in seconds when nothing changed.
"""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import settings as harness_settings
from harness.kernel.pipeline import Kernel, last_built
from harness.settings import Settings
from harness.vm import boot, session
from harness.vm.session import Session, VmError
from tests.support import kmemleak, ssh


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.vm)


_SUMMARY: list[str] = []
_REBOOT_FAILED: list[str] = []


@pytest.fixture
def summary() -> Callable[[str], None]:
    """A line for the end of pytest's output, passed or failed (what a
    kernel developer reads first: counts, times, reboots)."""
    return _SUMMARY.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARY:
        terminalreporter.section("VM suite summary")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """What ``make test`` resolved from the environment (the flavour, the cache)."""
    return harness_settings.from_env()


@pytest.fixture(scope="session")
def kernel(settings: Settings) -> Kernel:
    return last_built(settings)


@pytest.fixture(scope="session")
def shared_vm(kernel: Kernel, settings: Settings) -> Iterator[Session]:
    """The VM every test shares, booted once (use ``vm``)."""
    opts = boot.options(settings)
    opts.ssh_port = ssh.free_port()  # the VM is also the remote-host tests' SSH host
    with session.boot(opts, kernel) as s:
        yield s
        if settings.flavour.kmemleak:
            if not s.running:
                pytest.fail("kmemleak: no scan, the VM had stopped by the end of the suite")
            if s.boots > 1:
                _SUMMARY.append(f"kmemleak: the scan covers boot {s.boots} only")
            # Everything the suite made is gone by now: what is left leaked.
            s.run("rmmod doorbell 2>/dev/null; true")
            leaks = kmemleak.scan(s)
            if leaks:
                pytest.fail(f"kmemleak: {len(leaks)} leaks in iofd/eventfd/io bus/doorbell "
                            "code:\n" + "\n\n".join(leaks[:5]))


@pytest.fixture
def vm(shared_vm: Session, summary: Callable[[str], None]) -> Session:
    """The shared VM, booted again if an earlier test's hang or panic stopped
    it: that test has failed with the reason, the others still run."""
    if _REBOOT_FAILED:
        pytest.fail(f"the shared VM could not be booted again: {_REBOOT_FAILED[0]}")
    if not shared_vm.running:
        summary(f"the shared VM had stopped (console log: {shared_vm.console_log}); "
                f"booting it again (boot {shared_vm.boots + 1})")
        try:
            shared_vm.start()
        except VmError as e:  # one try: a boot that fails once will fail again
            _REBOOT_FAILED.append(str(e))
            raise
    return shared_vm


@pytest.fixture(scope="session")
def python() -> str:
    """The venv's interpreter; the guest sees the host's filesystem at the same paths."""
    return sys.executable
