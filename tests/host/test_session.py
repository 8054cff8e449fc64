"""The session's boot errors, with a shell standing in for vng: no VM needed."""

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from harness import paths
from harness.errors import HarnessError
from harness.machine import Machine
from harness.vm.accel import Decision
from harness.vm.boot import BootOptions
from harness.vm.session import (
    EARLY_CONSOLE,
    PROMPT,
    SESSION_SHELL,
    Session,
    VmError,
    _tail,
    describe_exit,
)


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    monkeypatch.setenv("KVM_IOFD_CACHE", str(tmp_path))
    s = Session(Path("/k"), BootOptions(accel=Decision("tcg", "test"), cache=tmp_path))
    yield s
    s.close()


def fake_vng(s: Session, script: str) -> None:
    """Make *script*, run by sh, the session's child, logged like a real boot."""
    s.console_log.parent.mkdir(parents=True, exist_ok=True)
    s.child = pexpect.spawn("sh", ["-c", script], encoding="utf-8", timeout=10)
    s.child.logfile_read = s.console_log.open("w", encoding="utf-8")


def test_early_console_is_on_the_command_line(session: Session) -> None:
    cmd = session.command()
    assert cmd[cmd.index(EARLY_CONSOLE) - 1] == "--append"


def test_exit_with_empty_console_says_so(session: Session) -> None:
    fake_vng(session, "exit 3")
    with pytest.raises(VmError, match=r"exited during boot \(vng exit status 3\)") as e:
        session._expect([PROMPT], 10, "boot")
    assert "console log is empty" in str(e.value)
    assert "vng --verbose --run /k" in str(e.value)
    assert session.child is None


def test_exit_shows_what_vng_printed(session: Session) -> None:
    fake_vng(session, "echo 'qemu-system-x86_64: cannot set up guest memory' >&2; exit 1")
    with pytest.raises(VmError, match=r"vng exit status 1") as e:
        session._expect([PROMPT], 10, "boot")
    assert "cannot set up guest memory" in str(e.value)
    assert "console log is empty" not in str(e.value)


def test_early_panic_is_reported_as_a_panic(session: Session) -> None:
    fake_vng(session, "echo 'Kernel panic - not syncing: KASAN: panic_on_warn set ...'")
    with pytest.raises(VmError, match="panicked during boot") as e:
        session._expect([PROMPT], 10, "boot")
    assert "KASAN" in str(e.value)


@pytest.mark.parametrize(("status", "sig", "words"), [
    (0, None, "vng exit status 0"),
    (None, 9, "vng killed by SIGKILL"),
    (None, 200, "vng killed by signal 200"),
    (None, None, "vng still running"),
])
def test_describe_exit(status: int | None, sig: int | None, words: str) -> None:
    assert describe_exit(status, sig) == words


def test_tail_counts_terminal_lines_once(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"".join(b"line %d\r\r\n" % i for i in range(100)))
    tail = _tail(log, lines=10)
    assert tail.splitlines()[1:11] == [f"line {i}" for i in range(90, 100)]


def test_tail_of_an_empty_log_is_empty(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"\r\r\n")
    assert _tail(log) == ""
    assert _tail(tmp_path / "missing.log") == ""


def test_each_boot_has_its_own_console_log(session: Session) -> None:
    first = session.console_log
    session.boots = 2
    again = session._console_log()
    assert again != first and again.name.endswith("-boot2.log")


def test_the_session_boots_into_its_own_shell(session: Session) -> None:
    cmd = session.command()
    assert cmd[cmd.index("--shell") + 1] == str(SESSION_SHELL)
    assert os.access(SESSION_SHELL, os.X_OK)


def test_the_session_shell_runs_no_rc_of_the_user(tmp_path: Path) -> None:
    """The guest shares the host's root: the user's rc would run in it."""
    for rc in (".bashrc", ".profile", ".bash_profile"):
        (tmp_path / rc).write_text("echo RC-RAN-$((6*7))\n")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TERM": "dumb"}
    child = pexpect.spawn(str(SESSION_SHELL), encoding="utf-8", timeout=10, env=env)
    child.logfile_read = seen = io.StringIO()
    try:
        child.expect(PROMPT)  # what the session waits for at boot
        child.sendline("echo __PATH_$PATH; exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    out = seen.getvalue()
    assert "RC-RAN-42" not in out
    path = re.search(r"__PATH_(/\S+)", out)
    assert path, out
    assert {"/usr/sbin", "/sbin"} <= set(path[1].split(":"))  # modprobe is found


# -- the session as a Machine --------------------------------------------------

PROBE = "import json, os, sys; print(json.dumps([os.getcwd(), sys.executable, dict(os.environ)]))\n"


def test_the_session_is_a_machine_whose_python_is_this_one_in_the_checkout(
        session: Session, tmp_path: Path) -> None:
    assert isinstance(session, Machine)
    (tmp_path / "probe.py").write_text(PROBE)
    cmd = session.python("probe", env={"PYTHONPATH": str(tmp_path), "DOORBELL_KO": "/a b/d.ko"})
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout
    cwd, exe, env = json.loads(out)
    assert (cwd, exe) == (str(paths.REPO), sys.executable)
    assert env["DOORBELL_KO"] == "/a b/d.ko" and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_the_session_fetches_files_by_copying_them(session: Session, tmp_path: Path) -> None:
    assert session.scratch == str(session.xfer) and session.xfer.is_dir()
    (tmp_path / "a").write_text("data")
    session.put(tmp_path / "a", f"{session.scratch}/b")
    session.get(f"{session.scratch}/b", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "data"
    with pytest.raises(HarnessError, match=r"^fetching \S+/missing from the guest failed"):
        session.get(f"{session.scratch}/missing", tmp_path / "d")


def test_a_failure_in_the_guest_shows_the_end_of_its_output(session: Session) -> None:
    e = session.failure("the benchmark runner failed", 2, "x" * 3000 + "the reason\n")
    assert e.what == "the benchmark runner failed in the guest (exit 2)"
    assert e.hint is not None and len(e.hint) == 2000 and e.hint.endswith("the reason")
    assert session.failure("it failed", 1, " ").hint == "see the console log"


def test_boot_makes_the_session_every_caller_used_to_write_out(tmp_path: Path) -> None:
    """KVM loaded by default; the doorbell on request, loaded again only when
    it is not; no setup at all when asked; the kernel's tree is booted."""
    from harness.kernel.pipeline import Kernel
    from harness.vm import session as vm_session

    ko = tmp_path / "doorbell.ko"
    k = Kernel(flavour="default", tree=tmp_path / "linux", bzimage=tmp_path / "bz", release="r",
               series="s", doorbell_ko=ko, headers=tmp_path, selftests=tmp_path,
               kselftests=tmp_path)

    def opts() -> BootOptions:
        return BootOptions(accel=Decision("tcg", "test"), cache=tmp_path)

    plain = vm_session.boot(opts(), k)
    assert plain.tree == k.tree and plain.setup == (vm_session.LOAD_KVM,)
    bench = vm_session.boot(opts(), k, doorbell=True)
    assert bench.setup == (vm_session.LOAD_KVM,
                           f"grep -q '^doorbell ' /proc/modules || insmod {ko}")
    assert vm_session.boot(opts(), k, kvm=False).setup == ()
