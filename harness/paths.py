"""Where things live: the repo's inputs and the build cache outside it."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_PATCH_DIR = REPO / "kernel-patch"
FRAGMENT = REPO / "Kconfig.fragment"
DEBUG_FRAGMENT = REPO / "Kconfig.debug.fragment"
DOORBELL_SRC = REPO / "doorbell-module"
RESULTS = REPO / "results"


def cache_root() -> Path:
    """The cache for kernel trees and builds, outside the repo.

    ``KVM_IOFD_CACHE`` overrides it; otherwise ``$XDG_CACHE_HOME/kvm-iofd``
    or ``~/.cache/kvm-iofd``.
    """
    if env := os.environ.get("KVM_IOFD_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kvm-iofd"


def tool_env() -> dict[str, str]:
    """The environment with this interpreter's bin dir first on PATH.

    vng and the helpers it runs (virtme-configkernel, virtme-run) are
    installed next to the interpreter, which need not be on PATH when the
    harness is run as ``.venv/bin/python -m harness``.
    """
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
