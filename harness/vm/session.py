"""A persistent console session in the test VM, driven by pexpect.

Booting under TCG costs 10-15 s, so the suite boots once and runs many
commands.  Commands do not travel through the console's byte stream, which
kernel messages may interleave with: each command is written to a script in
a directory shared read-write with the guest, its stdout, stderr and exit
code come back as files there, and only a short completion marker is
awaited on the console.  After each command the guest's kernel log is read
and cleared; a splat fails the step and is shown.
"""

import contextlib
import itertools
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from harness import paths
from harness.errors import HarnessError
from harness.progress import phase, say
from harness.vm import splat
from harness.vm.boot import BootOptions, vng_command

PANIC = r"Kernel panic - not syncing[^\r\n]*"


class GuestError(HarnessError):
    """The guest hung, panicked, died or splatted."""


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    rc: int


class Session:
    """One booted VM.  Use as a context manager, or call start() and close()."""

    def __init__(self, tree: Path, opts: BootOptions, boot_timeout: float = 300.0) -> None:
        self.tree = tree
        self.opts = opts
        self.boot_timeout = boot_timeout
        self.xfer = Path(tempfile.mkdtemp(prefix="xfer-", dir=_xfer_root()))
        self.opts.rwdirs = [*self.opts.rwdirs, self.xfer]
        self.console_log = paths.cache_root() / "logs" / f"console-{os.getpid()}-{id(self)}.log"
        self.child: pexpect.spawn | None = None
        self._n = itertools.count(1)

    def __enter__(self) -> "Session":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        cmd = vng_command(self.tree, self.opts)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        log = self.console_log.open("w", encoding="utf-8", errors="replace")
        with phase(f"booting {self.tree.name} under {self.opts.accel.accel} "
                   f"({self.opts.accel.reason})"):
            self.child = pexpect.spawn(cmd[0], cmd[1:], encoding="utf-8", codec_errors="replace",
                                       timeout=self.boot_timeout, dimensions=(50, 250),
                                       env={**paths.tool_env(), "TERM": "dumb"})
            self.child.logfile_read = log
            # Any prompt will do; then make the console quiet and wait for a
            # marker that the typed command itself cannot match.
            self._expect([r"[#$] ?$"], self.boot_timeout, "boot")
            self.child.sendline("stty -echo; dmesg -n 1; PS1=''; echo __READY_$((6*7))__")
            self._expect([r"__READY_42__"], 60, "boot")
        boot_log = self.run("dmesg -c", check_splats=False).stdout
        found = splat.find(boot_log)
        if found:
            raise GuestError("the guest kernel splatted while booting", splat.describe(found))

    def close(self) -> None:
        if self.child is None:
            return
        child, self.child = self.child, None
        if child.isalive():
            try:
                child.sendline("poweroff -f")
                child.expect(pexpect.EOF, timeout=20)
            except (pexpect.TIMEOUT, pexpect.EOF, OSError):
                pass
        _kill(child)
        shutil.rmtree(self.xfer, ignore_errors=True)

    # -- commands ----------------------------------------------------------

    def run(self, cmd: str, timeout: float = 600.0, check_splats: bool = True,
            cwd: Path = paths.REPO, env: dict[str, str] | None = None) -> Result:
        """Run *cmd* with bash in the guest; return its stdout, stderr and exit code."""
        if self.child is None:
            raise GuestError("the VM is not running", "start the session first")
        n = next(self._n)
        script = self.xfer / f"cmd-{n}.sh"
        exports = "".join(f"export {k}={_quote(v)}\n" for k, v in (env or {}).items())
        script.write_text(f"cd {_quote(str(cwd))}\n{exports}{cmd}\n")
        out, err, rc = (self.xfer / f"{k}-{n}" for k in ("out", "err", "rc"))
        self.child.sendline(f"bash {script} >{out} 2>{err} </dev/null; echo $? >{rc}; "
                            f"echo __DONE_{n}__")
        self._expect([rf"__DONE_{n}__"], timeout, f"'{cmd}'")
        result = Result(out.read_text(errors="replace"), err.read_text(errors="replace"),
                        int(rc.read_text().strip() or "-1"))
        if check_splats:
            self.check_splats(cmd)
        return result

    def check_splats(self, step: str) -> None:
        log = self.run("dmesg -c", check_splats=False).stdout
        found = splat.find(log)
        if found:
            raise GuestError(f"the guest kernel splatted during {step}", splat.describe(found))

    # -- internals ---------------------------------------------------------

    def _expect(self, patterns: list[str], timeout: float, what: str) -> None:
        assert self.child is not None
        i = self.child.expect([*patterns, PANIC, pexpect.EOF, pexpect.TIMEOUT], timeout=timeout)
        if i < len(patterns):
            return
        if i == len(patterns):
            with contextlib.suppress(pexpect.TIMEOUT):  # let the panic finish printing
                self.child.expect(pexpect.EOF, timeout=10)
            text = _tail(self.console_log)
            self.close()
            raise GuestError(f"the guest kernel panicked during {what}", text)
        tail = _tail(self.console_log)
        self.close()
        if i == len(patterns) + 1:
            raise GuestError(f"the VM exited during {what}", tail)
        raise GuestError(f"{what} did not finish within {timeout:.0f} s; QEMU was killed", tail)


def _xfer_root() -> Path:
    root = paths.cache_root() / "xfer"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _tail(log: Path, lines: int = 60) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    text = re.sub(r"\r", "", text)
    return "console tail:\n" + "\n".join(text.splitlines()[-lines:]) + f"\n(full console log: {log})"


def _kill(child: pexpect.spawn) -> None:
    """Kill vng, QEMU and anything else in the session's process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(0.1)
    child.close(force=True)
    say("VM stopped")
