"""``ssh://user@host[:port]`` -> where and how to connect, as OpenSSH would.

The URL names a host the way ``ssh`` does, so ``~/.ssh/config`` applies to
it: ``Host`` aliases, ``HostName``, ``User``, ``Port``, ``IdentityFile``,
``IdentitiesOnly``, ``UserKnownHostsFile`` and ``ProxyCommand``.  What the
URL says explicitly (user, port) wins over the config, as on the command
line of ``ssh``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paramiko

from harness.errors import HarnessError

DEFAULT_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
SYSTEM_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


@dataclass(frozen=True)
class Address:
    """One remote host, resolved through the SSH config."""

    url: str
    label: str                  # the name its results go under
    hostname: str               # what is dialled (after HostName)
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: tuple[str, ...] = field(default_factory=tuple)
    proxy_command: str | None = None

    @property
    def known_hosts_key(self) -> str:
        """How OpenSSH (and paramiko) file this host in known_hosts."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def _label(alias: str, user: str | None, port: int | None) -> str:
    """A name for the host that is safe as a directory and a table column."""
    text = (f"{user}@" if user else "") + alias + (f"-{port}" if port else "")
    return re.sub(r"[^A-Za-z0-9@._-]", "_", text)


def split_url(url: str) -> tuple[str | None, str, int | None]:
    """``ssh://[user@]host[:port]`` -> (user, host, port); anything else is refused."""
    parts = urlsplit(url)
    what = f"bad address '{url}'"
    hint = "write it as ssh://user@host or ssh://user@host:port (a Host alias from ~/.ssh/config works)"
    if parts.scheme != "ssh" or not parts.hostname:
        raise HarnessError(what, hint)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise HarnessError(f"{what}: only user, host and port may be given", hint)
    try:
        port = parts.port
    except ValueError:
        raise HarnessError(f"{what}: the port is not a number from 1 to 65535", hint) from None
    if port == 0:
        raise HarnessError(f"{what}: the port is not a number from 1 to 65535", hint)
    return (unquote(parts.username) if parts.username else None), parts.hostname, port


def load_config(path: Path | None) -> paramiko.SSHConfig:
    """The SSH client config; a missing default file is an empty config,
    a missing file the user named is an error."""
    chosen = (path or DEFAULT_CONFIG).expanduser()
    if not chosen.exists():
        if path is not None:
            raise HarnessError(f"SSH config {chosen} does not exist")
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(chosen))
    except (OSError, paramiko.ConfigParseError) as e:
        raise HarnessError(f"cannot read SSH config {chosen}: {e}") from None


def _files(value: str | list[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    items = value if isinstance(value, list) else shlex.split(value)
    return tuple(os.path.expanduser(v) for v in items)


def resolve(url: str, config: paramiko.SSHConfig) -> Address:
    """Parse *url* and apply the SSH config to the host it names."""
    user, alias, port = split_url(url)
    entry = config.lookup(alias)
    known = _files(entry.get("userknownhostsfile")) or tuple(
        os.path.expanduser(p) for p in DEFAULT_KNOWN_HOSTS)
    try:
        final_port = port or int(entry.get("port", 22))
    except ValueError:
        raise HarnessError(f"bad Port for {alias} in the SSH config: {entry.get('port')}") from None
    return Address(
        url=url,
        label=_label(alias, user, port),
        hostname=entry.get("hostname", alias),
        port=final_port,
        user=user or entry.get("user") or _local_user(),
        identity_files=_files(entry.get("identityfile")),
        identities_only=entry.get("identitiesonly", "no").lower() == "yes",
        known_hosts=known + SYSTEM_KNOWN_HOSTS,
        proxy_command=None if entry.get("proxycommand", "none").lower() == "none"
        else entry["proxycommand"],
    )


def _local_user() -> str:
    import getpass

    return getpass.getuser()
