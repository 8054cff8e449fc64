"""The environment variables the harness reads, resolved once.

The CLI (and the VM suite's conftest) call :func:`from_env` at start and
pass the result down; no other module reads these variables.

``KVM_IOFD_CACHE``   the cache for kernel trees, builds and logs
                     (default ``$XDG_CACHE_HOME/kvm-iofd`` or ``~/.cache/kvm-iofd``)
``KERNEL_SRC``       your own kernel tree instead of Debian's source
``QEMU_SRC``         your own QEMU tree instead of Debian's source (make nvme)
``JOBS``             make's -j (default: the number of CPUs)
``KVM_IOFD_ACCEL``   ``kvm`` or ``tcg``: skip the accelerator probes
``KVM_IOFD_FLAVOUR`` the kernel flavour (:mod:`harness.flavours`);
                     ``KVM_IOFD_DEBUG=1`` is short for ``debug``
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from harness import flavours
from harness.errors import HarnessError
from harness.flavours import Flavour
from payload.native.cache import cache_root

ACCELS = ("kvm", "tcg")


@dataclass(frozen=True)
class Settings:
    cache: Path
    kernel_src: Path | None
    jobs: int
    accel: str | None
    """A forced accelerator, or None to probe."""
    flavour: Flavour
    qemu_src: Path | None = None

    def with_flavour(self, name: str) -> Settings:
        return replace(self, flavour=flavours.get(name))


def from_env(env: Mapping[str, str] = os.environ) -> Settings:
    jobs = env.get("JOBS") or str(os.cpu_count() or 2)
    if not jobs.isdigit() or int(jobs) < 1:
        raise HarnessError(f"JOBS={jobs} is not a positive number")
    accel = env.get("KVM_IOFD_ACCEL") or None
    if accel is not None and accel not in ACCELS:
        raise HarnessError(f"KVM_IOFD_ACCEL={accel} is not understood", "use kvm or tcg")
    flavour = env.get("KVM_IOFD_FLAVOUR") or (flavours.DEBUG if env.get("KVM_IOFD_DEBUG") else
                                              flavours.DEFAULT)
    return Settings(
        cache=cache_root(env).absolute(),
        kernel_src=Path(env["KERNEL_SRC"]) if env.get("KERNEL_SRC") else None,
        jobs=int(jobs),
        accel=accel,
        flavour=flavours.get(flavour),
        qemu_src=Path(env["QEMU_SRC"]) if env.get("QEMU_SRC") else None,
    )
