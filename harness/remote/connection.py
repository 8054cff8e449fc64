"""One authenticated SSH connection: run commands, copy files, notice drops.

Host keys are checked against known_hosts and an unknown or changed key is
refused: the benchmark runs as root on the remote machine, so connecting to
whatever answers would hand it root.  Authentication tries what ``ssh``
would: the config's IdentityFile keys, the agent, then the default keys
(the latter two unless IdentitiesOnly is set).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import paramiko

from harness.errors import HarnessError
from harness.machine import Result
from harness.remote.address import Address

CONNECT_TIMEOUT = 20.0
KEEPALIVE_S = 5


class RemoteError(HarnessError):
    """Something went wrong on, or on the way to, one remote host."""


class ConnectionLost(RemoteError):
    """The connection dropped while a step was running."""


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse a host that known_hosts does not list, saying how to add it."""

    def __init__(self, address: Address) -> None:
        self.address = address

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        t = self.address
        port = f"-p {t.port} " if t.port != 22 else ""
        raise RemoteError(
            f"{t.label}: unknown host key for {t.known_hosts_key} ({key.get_name()} "
            f"{fingerprint(key)}); refusing to connect",
            f"check that fingerprint with the host's owner, then add the key: "
            f"ssh-keyscan {port}{t.hostname} >> ~/.ssh/known_hosts")


def _load_host_keys(address: Address, keys: paramiko.HostKeys) -> list[str]:
    """Add every known_hosts file of *address* that exists to *keys*; their paths."""
    used = []
    for f in address.known_hosts:
        if os.path.isfile(f):
            try:
                keys.load(f)
            except (OSError, paramiko.SSHException) as e:
                raise RemoteError(f"{address.label}: cannot read known_hosts file {f}: {e}") from None
            used.append(f)
    return used


class Remote:
    """A connected host.  Use as a context manager."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.client = paramiko.SSHClient()
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> Remote:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        t = self.address
        used = _load_host_keys(t, self.client.get_host_keys())
        self.client.set_missing_host_key_policy(_RefuseUnknown(t))
        sock = paramiko.ProxyCommand(t.proxy_command) if t.proxy_command else None
        try:
            self.client.connect(
                t.hostname, port=t.port, username=t.user,
                key_filename=[f for f in t.identity_files if os.path.exists(f)] or None,
                allow_agent=not t.identities_only, look_for_keys=not t.identities_only,
                timeout=CONNECT_TIMEOUT, banner_timeout=CONNECT_TIMEOUT,
                auth_timeout=CONNECT_TIMEOUT, sock=sock)
        except paramiko.BadHostKeyException as e:
            raise RemoteError(
                f"{t.label}: the host key of {t.known_hosts_key} has CHANGED "
                f"(got {e.key.get_name()} {fingerprint(e.key)}); refusing to connect",
                f"someone may be intercepting the connection; if the host was reinstalled, "
                f"verify its new key and update {' or '.join(used) or 'known_hosts'} "
                f"(ssh-keygen -R '{t.known_hosts_key}')") from None
        except (paramiko.AuthenticationException, paramiko.SSHException, OSError) as e:
            if not isinstance(e, paramiko.AuthenticationException) and not self._in_auth():
                raise RemoteError(f"{t.label}: cannot connect to {t.hostname}:{t.port}: "
                                  f"{e or type(e).__name__}",
                                  "is the host up and is sshd listening there?") from None
            how = ", ".join(filter(None, [
                "keys " + " ".join(t.identity_files) if t.identity_files else "",
                "" if t.identities_only else "the agent and ~/.ssh/id_*"]))
            why = str(e) if isinstance(e, paramiko.AuthenticationException) else "no key accepted"
            raise RemoteError(f"{t.label}: authentication as {t.user} failed ({why})",
                              f"tried {how or 'no keys'}; check that the user is right and its "
                              "authorized_keys holds one of those keys") from None
        transport = self.client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_S)

    def _in_auth(self) -> bool:
        """Whether a failed connect got as far as authentication: paramiko
        reports a rejected key as whatever went wrong with the last key
        type it tried, not always as AuthenticationException."""
        transport = self.client.get_transport()
        return transport is not None and transport.is_active() and not transport.is_authenticated()

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self.client.close()

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def _lost(self, what: str) -> ConnectionLost:
        return ConnectionLost(f"{self.address.label}: the connection was lost during {what}",
                              "the host went away or the network dropped; "
                              "results from the other hosts are kept")

    def run(self, cmd: str, timeout: float = 600.0, what: str | None = None) -> Result:
        """Run *cmd* with the login shell; stdout, stderr and exit status."""
        what = what or f"'{cmd}'"
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self._lost(what)
        try:
            chan = transport.open_session(timeout=CONNECT_TIMEOUT)
            chan.exec_command(cmd)
        except (OSError, paramiko.SSHException):
            raise self._lost(what) from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            busy = False
            while chan.recv_ready():
                out += chan.recv(65536)
                busy = True
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                busy = True
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if chan.closed or not transport.is_active():
                raise self._lost(what)
            if time.monotonic() > deadline:
                chan.close()
                raise RemoteError(f"{self.address.label}: {what} did not finish within "
                                  f"{timeout:.0f} s", "its remote process may still run")
            if not busy:
                time.sleep(0.05)
        rc = chan.recv_exit_status()
        chan.close()
        if rc == -1:  # paramiko's "closed without an exit status": the transport died
            raise self._lost(what)
        return Result(out.decode(errors="replace"), err.decode(errors="replace"), rc)

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def put(self, local: Path, remote: str) -> None:
        try:
            self._sftp_client().put(str(local), remote)
        except (OSError, EOFError, paramiko.SSHException) as e:
            self._transfer_failed(f"copying {local.name} there", e)

    def get(self, remote: str, local: Path) -> None:
        try:
            self._sftp_client().get(remote, str(local))
        except (OSError, EOFError, paramiko.SSHException) as e:
            self._transfer_failed(f"fetching {remote}", e)

    def _transfer_failed(self, what: str, e: Exception) -> None:
        transport = self.client.get_transport()
        if isinstance(e, EOFError) or transport is None or not transport.is_active():
            raise self._lost(what) from None
        raise RemoteError(f"{self.address.label}: {what} failed: {e}")
