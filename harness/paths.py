"""Where the checkout's inputs and outputs live (the cache: :mod:`harness.settings`)."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_PATCH_DIR = REPO / "kernel-patch"
DOORBELL_SRC = REPO / "doorbell-module"
RESULTS = REPO / "results"


def tool_env() -> dict[str, str]:
    """The environment with this interpreter's bin dir first on PATH.

    vng and the helpers it runs (virtme-configkernel, virtme-run) are
    installed next to the interpreter, which need not be on PATH when the
    harness is run as ``.venv/bin/python -m harness``.
    """
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
