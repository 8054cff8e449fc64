"""What ``make nvme`` and the NVMe check boot: the two QEMUs, the L2 kernel and initramfs.

Built on the host before the test VM boots (the VM sees the host's file
system, so the paths are the same inside it), and recorded in the cache
so the VM suite finds them without building (``make test`` builds them
first, as it builds the kernel).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.kernel.pipeline import Kernel
from harness.nvme import guest
from harness.qemu import build as qemu_build
from harness.qemu import source as qemu_source
from harness.settings import Settings


@dataclass(frozen=True)
class Inputs:
    qemu_debian: str
    qemu_patched: str
    qemu_series: str
    kernel: str
    initrd: str

    def runner_args(self) -> str:
        """The paths as :mod:`payload.nvme.runner` options."""
        return (f"--qemu-debian {self.qemu_debian} --qemu-patched {self.qemu_patched} "
                f"--kernel {self.kernel} --initrd {self.initrd}")


def _record(cache: Path) -> Path:
    return cache / "state" / "nvme-inputs.json"


def debian_qemu() -> Path:
    found = shutil.which("qemu-system-x86_64")
    if not found:
        raise HarnessError("Debian's qemu-system-x86_64 is not installed",
                           "make deps installs qemu-system-x86")
    return Path(found).resolve()


def make(cfg: Settings, kernel: Kernel) -> Inputs:
    """Build (or find up to date) everything, and record it."""
    tree, series = qemu_source.prepared(cfg.cache, cfg.qemu_src)
    binary = qemu_build.build(cfg.cache, tree, cfg.jobs)
    initrd = guest.initramfs(cfg.cache, cfg.jobs)
    got = Inputs(str(debian_qemu()), str(binary), series.id, str(kernel.bzimage), str(initrd))
    rec = _record(cfg.cache)
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps(asdict(got), indent=1))
    return got


def last_built(cfg: Settings) -> Inputs:
    """What the last :func:`make` recorded; a HarnessError if it never ran
    or a file it names is gone."""
    rec = _record(cfg.cache)
    if not rec.exists():
        raise HarnessError("the NVMe runs' QEMU and L2 guest are not built",
                           "run 'make nvme-build' (make test and make nvme run it)")
    got = Inputs(**json.loads(rec.read_text()))
    for p in (got.qemu_debian, got.qemu_patched, got.kernel, got.initrd):
        if not Path(p).exists():
            raise HarnessError(f"{p} is gone", "run 'make nvme-build' again")
    return got
