"""The VM suite: one boot of the patched kernel, shared by every test.

The kernel is the one ``make build`` (or ``make test``) built; the fixture
does not run make, so pytest starts in seconds when nothing changed.
"""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.kernel.prepare import Kernel, built
from harness.vm import accel, kmemleak, ssh
from harness.vm.boot import options_for
from harness.vm.session import Session

DEBUG = bool(os.environ.get("KVM_IOFD_DEBUG"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.vm)


@pytest.fixture(scope="session")
def kernel() -> Kernel:
    return built(DEBUG)


@pytest.fixture(scope="session")
def guest(kernel: Kernel) -> Iterator[Session]:
    paths.RESULTS.mkdir(exist_ok=True)
    opts = options_for(kernel.flavour, accel.detect(), [paths.RESULTS])
    opts.ssh_port = ssh.free_port()  # the guest is also the remote-target tests' SSH host
    with Session(Path(kernel.tree), opts) as s:
        r = s.run("modprobe kvm_amd 2>/dev/null || modprobe kvm_intel")
        assert r.rc == 0, f"no KVM vendor module loads in the guest: {r.stderr}"
        yield s
        if kernel.flavour == "debug":
            # Everything the suite made is gone by now: what is left leaked.
            s.run("rmmod doorbell 2>/dev/null; true")
            leaks = kmemleak.scan(s)
            if leaks:
                pytest.fail(f"kmemleak: {len(leaks)} leaks in iofd/eventfd/io bus/doorbell "
                            "code:\n" + "\n\n".join(leaks[:5]))


@pytest.fixture(scope="session")
def python() -> str:
    """The venv's interpreter; the guest sees the host's filesystem at the same paths."""
    return sys.executable
