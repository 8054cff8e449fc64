"""The remote-address pieces that need no remote host: URLs, SSH config,
payload, the merged table, and the errors for hosts that cannot be used.
The real SSH runs are in tests/vm/test_remote_ssh.py, against the VM's sshd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness import junit, paths
from harness.errors import HarnessError
from harness.machine import Machine, Result
from harness.remote import bundle, commands, setup, table
from harness.remote.address import Address, load_config, resolve, split_url
from harness.remote.connection import Remote, RemoteError
from harness.remote.host import Host
from harness.remote.jobs import Outcome, host_env
from payload import hostinfo
from tests.support import ssh

CONFIG = """\
Host box
    HostName 10.1.2.3
    User alice
    Port 2200
    IdentityFile ~/keys/box_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile ~/kh/box
Host jump
    ProxyCommand ssh -W %h:%p bastion
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "ssh_config"
    p.write_text(CONFIG)
    return p


@pytest.mark.parametrize("url,want", [
    ("ssh://root@host", ("root", "host", None)),
    ("ssh://host:2222", (None, "host", 2222)),
    ("ssh://a%40b@host:22/", ("a@b", "host", 22)),
])
def test_split_url(url: str, want: tuple[str | None, str, int | None]) -> None:
    assert split_url(url) == want


@pytest.mark.parametrize("url,why", [
    ("root@host", "bad address"),
    ("http://host", "bad address"),
    ("ssh://", "bad address"),
    ("ssh://host:99999", "port"),
    ("ssh://host:0", "port"),
    ("ssh://host/some/path", "only user, host and port"),
    ("ssh://u:secret@host", "only user, host and port"),
])
def test_bad_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(HarnessError, match=why):
        split_url(url)


def test_config_applies_to_the_alias(config: Path) -> None:
    t = resolve("ssh://box", load_config(config))
    home = os.path.expanduser("~")
    assert (t.hostname, t.port, t.user, t.label) == ("10.1.2.3", 2200, "alice", "box")
    assert t.identity_files == (f"{home}/keys/box_ed25519",) and t.identities_only
    assert t.known_hosts[0] == f"{home}/kh/box"
    assert t.known_hosts_key == "[10.1.2.3]:2200"


def test_the_url_wins_over_the_config(config: Path) -> None:
    t = resolve("ssh://bob@box:22", load_config(config))
    assert (t.user, t.port, t.label, t.known_hosts_key) == ("bob", 22, "bob@box-22", "10.1.2.3")


def test_unconfigured_host_gets_ssh_defaults(config: Path) -> None:
    t = resolve("ssh://other", load_config(config))
    assert (t.hostname, t.port, t.identities_only, t.proxy_command) == ("other", 22, False, None)
    assert t.known_hosts[0] == os.path.expanduser("~/.ssh/known_hosts")
    assert resolve("ssh://jump", load_config(config)).proxy_command == "ssh -W jump:22 bastion"


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        load_config(tmp_path / "nope")


def test_two_hosts_with_one_label_are_refused(config: Path) -> None:
    with pytest.raises(HarnessError, match="more than once"):
        commands.addresses(["ssh://box", "ssh://box"], config)


def test_unreachable_host_is_a_clear_error() -> None:
    port = ssh.free_port()  # nothing listens there
    t = Address(url=f"ssh://root@127.0.0.1:{port}", label="dead", hostname="127.0.0.1",
               port=port, user="root")
    with pytest.raises(RemoteError, match=f"dead: cannot connect to 127.0.0.1:{port}"):
        Remote(t).connect()


def test_cli_reports_a_dead_host_and_writes_its_column(tmp_path: Path) -> None:
    port = ssh.free_port()
    r = subprocess.run([sys.executable, "-m", "harness", "bench", "--ssh-config",
                        str(tmp_path / "empty"), "--host", f"ssh://root@127.0.0.1:{port}"],
                       capture_output=True, text=True, cwd=paths.REPO, timeout=120)
    assert r.returncode == 2 and "SSH config" in r.stderr  # a named config must exist
    (tmp_path / "empty").write_text("")
    r = subprocess.run([sys.executable, "-m", "harness", "bench", "--ssh-config",
                        str(tmp_path / "empty"), "--host", f"ssh://root@127.0.0.1:{port}",
                        "--results", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=paths.REPO, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "cannot connect" in r.stderr
    hosts = json.loads((tmp_path / "out" / "hosts.json").read_text())
    assert [h["ok"] for h in hosts] == [False]


def members(tgz: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tgz) as tar:
        return tar.getmembers()


def names(tgz: Path) -> list[str]:
    return [m.name for m in members(tgz)]


def test_bundle_is_the_payload_package_and_nothing_stale(tmp_path: Path) -> None:
    got = names(bundle.build(tmp_path / "p.tgz", with_pytest=True))
    assert not [n for n in got if n.startswith(("harness/", "tests/host/", "tests/vm/"))]
    for need in ("payload/vmexit/runner.py", "payload/native/vmexit_loop.c",
                 "payload/hostinfo.py", "tests/payload/test_doorbell.py",
                 "doorbell-module/doorbell.c", "doorbell-module/Kbuild", "pyproject.toml",
                 "lib/pytest/__init__.py", "lib/pluggy/__init__.py"):
        assert need in got, need
    assert not [n for n in got if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in got if n.startswith("lib/")
                and n.split("/")[1].startswith(("paramiko", "matplotlib"))]
    bare = names(bundle.build(tmp_path / "b.tgz", with_pytest=False))
    assert not [n for n in bare if n.startswith("lib/")]


def test_bundle_is_reproducible(tmp_path: Path) -> None:
    a = bundle.build(tmp_path / "a.tgz", with_pytest=False)
    b = bundle.build(tmp_path / "b.tgz", with_pytest=False)
    assert [(m.name, m.size, m.mtime) for m in members(a)] == \
        [(m.name, m.size, 0) for m in members(b)]


def test_hostinfo_runs_without_the_host_side_packages() -> None:
    """It runs from the payload: paramiko and matplotlib must not be needed."""
    code = ("import sys; sys.modules['paramiko'] = None; sys.modules['matplotlib'] = None; "
            "import runpy; runpy.run_module('payload.hostinfo', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=paths.REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kernel"] == os.uname().release
    assert set(info) >= {"hostname", "cpu", "kvm", "cap_iofd", "doorbell", "root"}
    assert info == {**hostinfo.collect(), "python": info["python"]}


def _outcome(label: str, bench: dict | None = None, error: str | None = None) -> Outcome:
    t = Address(url=f"ssh://{label}", label=label, hostname=label, port=22, user="root")
    return Outcome(t, info={"hostname": label, "kernel": "6.12-iofd", "cpu": "EPYC", "cpus": 8},
                   bench=bench, error=error)


def test_table_has_one_column_per_host_and_keeps_failures() -> None:
    bench = {"modes": {"iofd-pio": {"rtt_us": {"median": 1.5}},
                       "userspace-pio": {"rtt_us": {"median": 3.0}}},
             "targets": [{"rule": "r1", "ok": True}, {"rule": "r2", "ok": False}]}
    md = table.markdown([_outcome("a", bench=bench), _outcome("b", error="b: connection lost")])
    lines = md.splitlines()
    assert lines[0] == "| | a | b |"
    assert "| iofd-pio rtt µs | 1.500 | - |" in lines
    assert "| userspace-pio / iofd-pio | 2.00 | - |" in lines
    assert "| targets missed | r2 | - |" in lines
    assert "| status | ok | **FAILED**: b: connection lost |" in lines


def test_remote_record_is_tagged_with_the_host() -> None:
    t = Address(url="ssh://h", label="h", hostname="h", port=22, user="root")
    env = host_env(t, {"cpu": "AMD EPYC 9654", "kernel": "6.12.117-iofd"})
    assert env["host_cpu"] == "AMD EPYC 9654" and env["remote"]["kernel"] == "6.12.117-iofd"
    assert env["remote"]["url"] == "ssh://h"


def test_junit_counts_and_clean(tmp_path: Path) -> None:
    f = tmp_path / "j.xml"
    f.write_text('<testsuites><testsuite tests="3" failures="0" errors="0" skipped="1"/>'
                 "</testsuites>")
    c = junit.counts(f)
    assert c == {"tests": 3, "failures": 0, "errors": 0, "skipped": 1}
    assert not junit.clean(c) and junit.clean({**c, "skipped": 0})
    assert not junit.clean({**c, "tests": 0, "skipped": 0})


def test_vm_client_files_pin_the_vm_host_keys(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "host_keys", lambda: ["ssh-ed25519 AAAAkey"])
    cfg = ssh.write_client_files(tmp_path, {"vm": 2222, "fwd": 3333})
    assert (tmp_path / "known_hosts").read_text() == (
        "[127.0.0.1]:2222 ssh-ed25519 AAAAkey\n[127.0.0.1]:3333 ssh-ed25519 AAAAkey\n")
    t = resolve("ssh://fwd", load_config(cfg))
    assert (t.port, t.user, t.known_hosts[0]) == (3333, "root", str(tmp_path / "known_hosts"))


class FakeRemote:
    """Answers the prerequisite check as a host with these facts would."""

    def __init__(self, machine: str = "x86_64", uid: str = "0", cc: str = "cc",
                 py: str = "3.11", sudo_rc: int = 0) -> None:
        self.address = Address(url="ssh://h", label="h", hostname="h", port=22, user="me")
        self.answer = f"{machine}\n{uid}\n{cc}\n{py}\n"
        self.sudo_rc = sudo_rc

    def run(self, cmd: str, timeout: float = 0, what: str | None = None) -> Result:
        if cmd == "sudo -n true":
            return Result("", "sudo: a password is required", self.sudo_rc)
        return Result(self.answer, "", 0)


@pytest.mark.parametrize("facts,why", [
    ({"machine": "aarch64"}, "the host is aarch64"),
    ({"py": "3.9"}, r"needs python3 >= 3.11, has 3.9"),
    ({"py": "none"}, r"needs python3 >= 3.11, has none"),
    ({"cc": "no-cc"}, "no C compiler"),
    ({"uid": "1000", "sudo_rc": 1}, "me is not root and has no passwordless sudo"),
])
def test_unfit_hosts_are_named_and_refused(facts: dict, why: str) -> None:
    with pytest.raises(RemoteError, match=f"^h: .*{why}"):
        setup.prerequisites(FakeRemote(**facts))  # type: ignore[arg-type]


def test_root_or_sudo_decides_the_prefix() -> None:
    assert setup.prerequisites(FakeRemote()) == ""  # type: ignore[arg-type]
    assert setup.prerequisites(FakeRemote(uid="1000")) == "sudo -n "  # type: ignore[arg-type]


class LocalRemote(FakeRemote):
    """Runs each command with bash here, as the connection would there."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[tuple[str, float, str | None]] = []

    def run(self, cmd: str, timeout: float = 0, what: str | None = None) -> Result:
        self.commands.append((cmd, timeout, what))
        p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
        return Result(p.stdout, p.stderr, p.returncode)


def test_a_host_is_a_machine_running_the_payloads_python_in_its_workdir(tmp_path: Path) -> None:
    host = Host(LocalRemote(), str(tmp_path), sudo="")  # type: ignore[arg-type]
    assert isinstance(host, Machine) and host.scratch == str(tmp_path)
    (tmp_path / "probe.py").write_text(
        "import json, os, sys; print(json.dumps([os.getcwd(), sys.flags.no_user_site, "
        "dict(os.environ)]))\n")
    r = host.run(host.python("probe", env={"DOORBELL_KO": "/a b/d.ko"}), 30, what="the probe")
    cwd, no_user_site, env = json.loads(r.stdout)
    assert (cwd, no_user_site) == (str(tmp_path), 1)
    assert env["PYTHONPATH"] == f"{tmp_path}:{tmp_path}/{bundle.LIB}"
    assert env["DOORBELL_KO"] == "/a b/d.ko" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert host.remote.commands[0][1:] == (30, "the probe")  # type: ignore[attr-defined]


def test_a_host_exports_the_environment_and_names_the_command(tmp_path: Path) -> None:
    host = Host(LocalRemote(), str(tmp_path), sudo="sudo -n ")  # type: ignore[arg-type]
    assert host.run("echo \"$A\"", env={"A": "x 'y'"}).stdout == "x 'y'\n"
    assert host.remote.commands[0][2] == "'echo \"$A\"'"  # type: ignore[attr-defined]
    assert "&& sudo -n env " in host.python("m")


def test_a_hosts_failures_are_named_and_show_the_end_of_the_output() -> None:
    host = Host(FakeRemote(), "/tmp/w", sudo="")  # type: ignore[arg-type]
    e = host.failure("the benchmark runner failed", 2, "x" * 2000 + "why\n")
    assert isinstance(e, RemoteError) and e.what == "h: the benchmark runner failed (exit 2)"
    assert e.hint is not None and len(e.hint) == 1500 and e.hint.endswith("why")
    assert host.failure("it failed", 1, "").hint is None
    with pytest.raises(RemoteError, match=r"^h: the probe failed \(exit 3\): on stderr$"):
        host.check(Result("on stdout", "on stderr", 3), "the probe")
    ok = Result("", "", 0)
    assert host.check(ok, "the probe") is ok


def test_a_count_mismatch_on_a_host_is_its_error_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CountMismatch comes from the payload's checks (not a HarnessError): a
    host whose counts are off gets it as its error, with no traceback file."""
    from harness.remote import jobs
    from payload.vmexit.checks import CountMismatch

    class FakeRemote:
        def __init__(self, address: Address) -> None:
            self.address = address

        def __enter__(self) -> FakeRemote:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    host = type("FakeHost", (), {"info": {"hostname": "h"}})()
    monkeypatch.setattr(jobs, "Remote", FakeRemote)
    monkeypatch.setattr(jobs.setup, "open_host", lambda remote, kos, pytest: host)
    monkeypatch.setattr(jobs, "_cleanup", lambda h: None)

    def job(h: object, out: Path, outcome: Outcome) -> None:
        raise CountMismatch(["iofd-pio trial 0: doorbell = 0, must be 5"])

    address = Address(url="ssh://h", label="h", hostname="h", port=22, user="root")
    outcome = jobs._one(address, tmp_path, {}, False, job)
    assert outcome.error is not None and outcome.error.startswith("h: 1 count check(s) failed")
    assert "doorbell = 0, must be 5" in outcome.error
    assert not (tmp_path / "h" / "error.log").exists()
