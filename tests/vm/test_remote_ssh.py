"""``bench|test --host ssh://...`` against the test VM's own sshd.

The guest runs sshd on a loopback port (see the ``vm`` fixture), with
host keys that vng made here, so these tests drive the remote path exactly
as a user would drive a real host: through the CLI, with an ssh_config,
known_hosts checked strictly and key authentication.  A forwarder that
the test can cut stands in for a host that drops mid-run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import paths
from harness.remote.address import load_config, resolve
from harness.remote.connection import Remote
from harness.vm.session import Session
from tests.support import ssh


class Forwarder:
    """127.0.0.1:port -> the VM's sshd, until cut() closes every connection."""

    def __init__(self, to_port: int) -> None:
        self.to_port = to_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.cut_done = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.to_port))
            self.socks += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_done = True
        self.listener.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def sshd(vm: Session) -> int:
    port = vm.opts.ssh_port
    assert port is not None, "the vm fixture boots without --ssh"
    ssh.wait_for_sshd(port)
    return port


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def run_cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    return subprocess.run(harness_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=paths.REPO, env=env)


def test_bench_on_two_hosts_one_of_which_drops(sshd: int, vm: Session,
                                               tmp_path: Path) -> None:
    fwd = Forwarder(sshd)
    config = ssh.write_client_files(tmp_path, {"iofd-vm": sshd, "flaky-vm": fwd.port})
    proc = subprocess.Popen(
        harness_cmd("bench", "--ssh-config", str(config), "--host", "ssh://iofd-vm",
                    "--host", "ssh://flaky-vm", "-n", "20000", "-t", "1",
                    "--results", str(tmp_path / "out")),
        cwd=paths.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Cut the second host once a benchmark runs on the guest: mid-run.
        deadline = time.monotonic() + 1200  # the debug kernel is slow to get there
        while proc.poll() is None and time.monotonic() < deadline:
            if vm.run("pgrep -f payload.vmexit.runner", check_splats=False).rc == 0:
                fwd.cut()
                break
            time.sleep(1)
        out, err = proc.communicate(timeout=1800)
    finally:
        proc.kill()
    assert fwd.cut_done, f"no benchmark ever ran on the guest:\n{err[-3000:]}"
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"
    out_dir = tmp_path / "out"
    hosts = {h["label"]: h for h in json.loads((out_dir / "hosts.json").read_text())}
    assert hosts["iofd-vm"]["ok"], hosts["iofd-vm"]["error"]
    assert not hosts["flaky-vm"]["ok"]
    assert "flaky-vm: the connection was lost during" in hosts["flaky-vm"]["error"]
    assert "Traceback" not in err
    # The surviving host's record is tagged with the remote host's CPU and kernel.
    bench = json.loads((out_dir / "iofd-vm" / "bench.json").read_text())
    uname = vm.run("uname -r").stdout.strip()
    assert bench["kernel"] == bench["remote"]["kernel"] == uname
    assert bench["host_cpu"] == bench["remote"]["cpu"] != "unknown"
    assert all(bench["modes"][m]["doorbell_exact"] for m in bench["modes"])
    md = (out_dir / "hosts.md").read_text()
    assert "| | iofd-vm | flaky-vm |" in md and "connection was lost" in md
    # The host that finished removed its work directory; only the dropped one's may be left.
    left = vm.run("ls -d /tmp/kvm-iofd.*/ 2>/dev/null | wc -l").stdout.strip()
    assert left in ("0", "1"), left


def test_guest_tests_run_on_the_remote_host(sshd: int, tmp_path: Path) -> None:
    config = ssh.write_client_files(tmp_path, {"iofd-vm": sshd})
    r = run_cli("test", "--ssh-config", str(config), "--host", "ssh://iofd-vm",
                "--results", str(tmp_path / "out"), "tests/payload/test_doorbell.py")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    host = json.loads((tmp_path / "out" / "hosts.json").read_text())[0]
    assert host["tests"]["tests"] > 0 and host["tests"]["skipped"] == 0, host


def test_unknown_host_key_is_refused(sshd: int, tmp_path: Path) -> None:
    config = ssh.write_client_files(tmp_path, {"iofd-vm": sshd})
    (tmp_path / "known_hosts").write_text("")
    r = run_cli("bench", "--ssh-config", str(config), "--host", "ssh://iofd-vm", "-n", "10",
                "--results", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "unknown host key for [127.0.0.1]:" in r.stderr and "refusing to connect" in r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / "known_hosts").read_text() == "", "the key was learned silently"


def test_changed_host_key_is_refused(sshd: int, tmp_path: Path) -> None:
    config = ssh.write_client_files(tmp_path, {"iofd-vm": sshd})
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")],
                   check=True)
    impostor = " ".join((tmp_path / "impostor.pub").read_text().split()[:2])
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{sshd} {impostor}\n")
    r = run_cli("bench", "--ssh-config", str(config), "--host", "ssh://iofd-vm", "-n", "10",
                "--results", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "has CHANGED" in r.stderr and "refusing to connect" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_failed_authentication_is_refused(sshd: int, tmp_path: Path) -> None:
    config = ssh.write_client_files(tmp_path, {"iofd-vm": sshd})
    stranger = tmp_path / "id_stranger"  # a key the guest's authorized_keys does not hold
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    config.write_text(config.read_text().replace(str(ssh.identity()), str(stranger)))
    r = run_cli("bench", "--ssh-config", str(config), "--host", "ssh://iofd-vm", "-n", "10",
                "--results", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "iofd-vm: authentication as root failed" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr



def test_proxy_command_is_honoured(sshd: int, tmp_path: Path) -> None:
    # Port 1 has no listener here: only the ProxyCommand can reach the guest.
    config = ssh.write_client_files(tmp_path, {"proxied": 1})
    with open(config, "a") as f:
        f.write("    ProxyCommand bash -c 'exec 3<>/dev/tcp/127.0.0.1/"
                f"{sshd}; cat <&3 & exec cat >&3'\n")
    with Remote(resolve("ssh://proxied", load_config(config))) as remote:
        assert remote.run("echo through the proxy").stdout == "through the proxy\n"
