"""A checkout under /var/tmp and a cache under /var/cache work like any other.

virtme-ng's guest init mounts an empty tmpfs over both.  Each test boots a
VM of its own from a real ``git clone`` of this checkout under /var/tmp,
with its cache (console logs, the command transfer directory) under
/var/cache: with the shares the guest runs the clone's code; without them
(the boot options before this was fixed) the VM does not even get a shell.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.kernel.pipeline import Kernel
from harness.settings import Settings
from harness.vm import accel, boot, session
from harness.vm.session import VmError


@dataclasses.dataclass(frozen=True)
class Places:
    clone: Path
    cache: Path


@pytest.fixture(scope="module")
def places() -> Iterator[Places]:
    clone_root = Path(tempfile.mkdtemp(prefix="kvm-iofd-test-", dir="/var/tmp"))
    cache = Path(tempfile.mkdtemp(prefix="kvm-iofd-test-", dir="/var/cache"))
    clone = clone_root / "checkout"
    subprocess.run(["git", "clone", "-q", str(paths.REPO), str(clone)], check=True, timeout=120)
    (clone / "results").mkdir()
    yield Places(clone, cache)
    shutil.rmtree(clone_root, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


def options(settings: Settings, places: Places) -> boot.BootOptions:
    """What make test in that clone, with KVM_IOFD_CACHE there, would boot with."""
    cfg = dataclasses.replace(settings, cache=places.cache)
    opts = boot.options_for(cfg, accel.detect(cfg.accel), [places.clone / "results"])
    opts.visible = [places.clone, places.cache]
    opts.shell = places.clone / "harness" / "vm" / "session-shell"
    return opts


def test_the_guest_runs_the_clone_under_var_tmp(kernel: Kernel, settings: Settings,
                                                places: Places) -> None:
    with session.boot(options(settings, places), kernel) as vm:
        r = vm.run(f"{sys.executable} -c 'import payload; print(payload.__file__)'",
                   cwd=places.clone)
        assert r.rc == 0, r.stderr
        assert r.stdout.strip() == str(places.clone / "payload" / "__init__.py")
        r = vm.run(f"{sys.executable} -m payload.hostinfo", cwd=places.clone)
        assert r.rc == 0, r.stderr
        assert json.loads(r.stdout)["cap_iofd"], r.stdout
        r = vm.run(f"echo written > {places.clone}/results/probe")
        assert r.rc == 0
    assert (places.clone / "results" / "probe").read_text() == "written\n"
    assert vm.console_log.is_relative_to(places.cache) and vm.console_log.stat().st_size > 0


def test_without_the_shares_the_vm_has_no_shell(kernel: Kernel, settings: Settings,
                                                places: Places) -> None:
    """The control: the same boot with nothing shared fails, as it did before."""
    opts = options(settings, places)
    opts.visible = []
    opts.boot_timeout = 180.0
    with pytest.raises(VmError), session.boot(opts, kernel, kvm=False):
        pass
