"""A host reached over SSH, with the payload unpacked there: the remote
:class:`harness.machine.Machine`, as :class:`harness.vm.session.Session` is
the VM's.  :mod:`harness.remote.setup` makes one ready (or says why it
cannot be); this module is only how commands and files travel to it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.machine import Result, env_command
from harness.remote import bundle
from harness.remote.connection import Remote, RemoteError


@dataclass
class Host:
    """A host with the payload unpacked in ``workdir``."""

    remote: Remote
    workdir: str
    sudo: str                       # "" as root, else "sudo -n "
    info: dict[str, Any] = field(default_factory=dict)
    doorbell_ko: str | None = None  # a path on the host, when one is known
    loaded_doorbell: bool = False

    @property
    def label(self) -> str:
        return self.remote.address.label

    @property
    def scratch(self) -> str:
        return self.workdir

    def run(self, cmd: str, timeout: float = 600.0, env: dict[str, str] | None = None, *,
            what: str | None = None) -> Result:
        """Run *cmd* with the login shell, as the user that connected."""
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
        return self.remote.run(exports + cmd, timeout, what or f"'{cmd}'")

    def put(self, local: Path, remote: str) -> None:
        self.remote.put(local, remote)

    def get(self, remote: str, local: Path) -> None:
        self.remote.get(remote, local)

    def python(self, module_and_args: str, env: dict[str, str] | None = None) -> str:
        """The host's python3, without its user site, on the unpacked payload
        and its bundled libraries."""
        exports = {"PYTHONPATH": f"{self.workdir}:{self.workdir}/{bundle.LIB}",
                   "PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": f"{self.workdir}/cache",
                   **(env or {})}
        return env_command(self.workdir, exports, f"python3 -s -m {module_and_args}", self.sudo)

    def failure(self, what: str, rc: int, detail: str) -> RemoteError:
        return RemoteError(f"{self.label}: {what} (exit {rc})", detail.strip()[-1500:] or None)

    def check(self, r: Result, what: str) -> Result:
        if r.rc:
            raise self.failure(f"{what} failed", r.rc, r.stderr.strip() or r.stdout.strip())
        return r
