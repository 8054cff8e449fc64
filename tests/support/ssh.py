"""The test VM as an SSH host, for the remote-target tests.

``vng --ssh PORT --ssh-tcp`` starts sshd in the guest on a loopback port,
with host keys and a client key that vng keeps in its own cache.  This
writes what a user would have for a real host: an ``ssh_config`` entry and
a known_hosts file holding the VM's real host keys, read from vng's cache
on this machine (never learned over the network), so the remote path runs
with strict host-key checking exactly as against a real host.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from virtme_ng.utils import SSH_DIR

from harness.vm.nudge import free_port

__all__ = ["free_port", "host_keys", "identity", "wait_for_sshd", "write_client_files"]


def host_keys() -> list[str]:
    """``type base64`` of each host key the guest's sshd will offer."""
    files = sorted((SSH_DIR / "etc" / "ssh").glob("ssh_host_*_key.pub"))
    return [" ".join(f.read_text().split()[:2]) for f in files]


def identity() -> Path:
    return SSH_DIR / "id_virtme"


def write_client_files(out: Path, hosts: dict[str, int]) -> Path:
    """known_hosts and an ssh_config with a ``Host`` entry per alias -> loopback
    port (the VM's own, or a forwarder to it); returns the config's path."""
    out.mkdir(parents=True, exist_ok=True)
    known = out / "known_hosts"
    known.write_text("".join(f"[127.0.0.1]:{port} {k}\n"
                             for port in sorted(set(hosts.values())) for k in host_keys()))
    config = out / "ssh_config"
    config.write_text("".join(
        f"Host {alias}\n"
        "    HostName 127.0.0.1\n"
        f"    Port {port}\n"
        "    User root\n"
        f"    IdentityFile {identity()}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known}\n" for alias, port in hosts.items()))
    return config


def wait_for_sshd(port: int, timeout: float = 60.0) -> None:
    """Until the guest's sshd sends its banner: vng starts it in the background."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SSH banner on 127.0.0.1:{port} within {timeout:.0f} s")
        time.sleep(1)
