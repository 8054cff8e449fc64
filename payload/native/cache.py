"""Where the harness keeps its cache: the one rule the host and the payload share.

The host resolves it once (:mod:`harness.settings`) for its kernel trees,
builds and logs, and passes the result down as ``KVM_IOFD_CACHE``; the
payload resolves it again where it runs (the VM, an SSH host) to find the
native loops' builds.  Written once here, in the standard-library-only
payload, so the two can never disagree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    """``$KVM_IOFD_CACHE``, else ``$XDG_CACHE_HOME/kvm-iofd``, else
    ``~/.cache/kvm-iofd``; an empty variable counts as unset."""
    if env.get("KVM_IOFD_CACHE"):
        return Path(env["KVM_IOFD_CACHE"])
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kvm-iofd"
