"""A persistent console session in the test VM, driven by pexpect.

Booting under TCG costs tens of seconds, so the suite boots once and runs
many commands.  Commands do not travel through the console's byte stream, which
kernel messages may interleave with: each command is written to a script in
a directory shared read-write with the guest, its stdout, stderr and exit
code come back as files there, and only a short completion marker is
awaited on the console.  After each command the guest's kernel log is read
and cleared; a splat fails the step and is shown.

The console vng gives the guest kernel (hvc0) comes up late in boot, so the
session adds the early serial console on the same terminal: a panic before
hvc0 exists, after which panic=-1 and -no-reboot make QEMU quit at once, is
shown and reported as a panic instead of leaving an empty console log.

A session is a :class:`harness.machine.Machine`: the guest sees the host's
filesystem at the same paths, so its files are fetched by copying them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pexpect

from harness import paths
from harness.errors import HarnessError
from harness.kernel.pipeline import Kernel
from harness.machine import Result, env_command
from harness.progress import phase, say
from harness.settings import Settings
from harness.vm.boot import BootOptions, options, vng_command
from payload import splat

PANIC = r"Kernel panic - not syncing[^\r\n]*"
# Any shell prompt, the user's or the session shell's ("bash-5.2# ").
PROMPT = r"[#$] ?$"
# ttyS0 is the terminal vng gives the shell.  At vng's quiet log level only
# a panic (which raises the console log level itself) comes through, and
# the early console hands over to hvc0 once that is registered.
EARLY_CONSOLE = "earlyprintk=serial,ttyS0,115200"

# The console shell: bash without the host user's rc (see the script).  vng
# hands the path to the guest on the kernel command line, which splits at
# whitespace, so a checkout whose path has any keeps the user's shell.
SESSION_SHELL = Path(__file__).with_name("session-shell")


# KVM itself is a module in the harness's config; the vendor module decides.
LOAD_KVM = "modprobe kvm_amd 2>/dev/null || modprobe kvm_intel"


def load_doorbell(kernel: Kernel) -> str:
    """The guest command that loads *kernel*'s doorbell module unless it is
    loaded already (a test may have unloaded it, a reboot loses it)."""
    return f"grep -q '^doorbell ' /proc/modules || insmod {kernel.doorbell_ko}"


def boot(how: Settings | BootOptions, kernel: Kernel, *, kvm: bool = True,
         doorbell: bool = False) -> Session:
    """A session of *kernel*, not yet booted (use it as a context manager):
    booted as the CLI and the VM suite boot (:func:`harness.vm.boot.options`
    of the settings *how*), or with the boot options *how* made for the
    occasion.  After every boot it loads KVM (unless not *kvm*) and, with
    *doorbell*, the doorbell module."""
    opts = how if isinstance(how, BootOptions) else options(how)
    setup = ((LOAD_KVM,) if kvm else ()) + ((load_doorbell(kernel),) if doorbell else ())
    return Session(kernel.tree, opts, setup=setup)


class VmError(HarnessError):
    """The guest hung, panicked, died or splatted."""


class Session:
    """One booted VM.  Use as a context manager, or call start() and close()."""

    label = "vm"

    def __init__(self, tree: Path, opts: BootOptions, setup: tuple[str, ...] = ()) -> None:
        """*setup*: commands run after every boot, before the VM is handed out
        (e.g. :data:`LOAD_KVM`); one that fails stops the boot with its error."""
        self.tree = tree
        self.opts = opts
        self.setup = setup
        self.boot_timeout = opts.boot_timeout
        self.xfer = Path(tempfile.mkdtemp(prefix="xfer-", dir=_xfer_root(opts.cache)))
        self.opts.rwdirs = [*self.opts.rwdirs, self.xfer]
        self.opts.append = [*self.opts.append, EARLY_CONSOLE]
        if self.opts.shell is None and not any(c.isspace() for c in str(SESSION_SHELL)):
            self.opts.shell = SESSION_SHELL
        self.boots = 0
        self.console_log = self._console_log()
        self.child: pexpect.spawn | None = None
        self._n = itertools.count(1)

    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        """Booted and not stopped since: a hang, a panic or close() stops it."""
        return self.child is not None

    def start(self) -> None:
        """Boot; after a stop, boot again with a new console log, so the log an
        error message named is kept."""
        if self.child is not None:
            raise VmError("the VM is already running", "close() it before starting it again")
        self.boots += 1
        self.console_log = self._console_log()
        self.xfer.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
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
            self._expect([PROMPT], self.boot_timeout, "boot")
            self.child.sendline("stty -echo; dmesg -n 1; PS1=''; echo __READY_$((6*7))__")
            self._expect([r"__READY_42__"], 60, "boot")
        # Kept beside the console log (which is quiet): where a slow boot went.
        boot_log = self.run("cat /proc/uptime; dmesg -c", check_splats=False).stdout
        self.console_log.with_suffix(".dmesg").write_text(boot_log)
        found = splat.find(boot_log)
        if found:
            self.close()  # a VM half set up is no VM to hand out
            raise VmError("the guest kernel splatted while booting", splat.describe(found))
        for cmd in self.setup:
            try:
                r = self.run(cmd)
            except VmError:  # a splat: the VM is still up
                self.close()
                raise
            if r.rc:
                self.close()
                raise VmError(f"'{cmd}' failed in the guest after boot (exit {r.rc})",
                                 r.stderr.strip() or r.stdout.strip() or "it printed nothing")

    def command(self) -> list[str]:
        """The vng command line this session boots with."""
        return vng_command(self.tree, self.opts)

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

    def run(self, cmd: str, timeout: float = 600.0, env: dict[str, str] | None = None, *,
            what: str | None = None, check_splats: bool = True, cwd: Path = paths.REPO) -> Result:
        """Run *cmd* with bash in the guest; return its stdout, stderr and exit code.
        *what* names it in the error should the guest hang, panic or splat during it."""
        if self.child is None:
            raise VmError("the VM is not running", "start the session first")
        n = next(self._n)
        script = self.xfer / f"cmd-{n}.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in (env or {}).items())
        script.write_text(f"cd {shlex.quote(str(cwd))}\n{exports}{cmd}\n")
        out, err, rc = (self.xfer / f"{k}-{n}" for k in ("out", "err", "rc"))
        self.child.sendline(f"bash {script} >{out} 2>{err} </dev/null; echo $? >{rc}; "
                            f"echo __DONE_{n}__")
        self._expect([rf"__DONE_{n}__"], timeout, what or f"'{cmd}'")
        result = Result(out.read_text(errors="replace"), err.read_text(errors="replace"),
                        int(rc.read_text().strip() or "-1"))
        if check_splats:
            self.check_splats(what or cmd)
        return result

    @property
    def scratch(self) -> str:
        """The transfer directory, which the guest writes as root and the host reads."""
        return str(self.xfer)

    def put(self, local: Path, remote: str) -> None:
        _copy(local, Path(remote), f"copying {local} into the guest", None)

    def get(self, remote: str, local: Path) -> None:
        _copy(Path(remote), local, f"fetching {remote} from the guest",
              "did the command that should have written it fail?")

    def python(self, module_and_args: str, env: dict[str, str] | None = None) -> str:
        """This interpreter (the venv's, which the guest sees at the same path)
        in the checkout; the console shell is root's.  The payload gets the
        host's cache (where the native loop is built) as KVM_IOFD_CACHE."""
        base = {"PYTHONDONTWRITEBYTECODE": "1", "KVM_IOFD_CACHE": str(self.opts.cache)}
        return env_command(str(paths.REPO), {**base, **(env or {})},
                           f"{shlex.quote(sys.executable)} -m {module_and_args}")

    def failure(self, what: str, rc: int, detail: str) -> HarnessError:
        return HarnessError(f"{what} in the guest (exit {rc})",
                            detail.strip()[-2000:] or "see the console log")

    def check_splats(self, step: str) -> None:
        log = self.run("dmesg -c", check_splats=False).stdout
        found = splat.find(log)
        if found:
            raise VmError(f"the guest kernel splatted during {step}", splat.describe(found))

    # -- internals ---------------------------------------------------------

    def _console_log(self) -> Path:
        again = f"-boot{self.boots}" if self.boots > 1 else ""
        return self.opts.cache / "logs" / f"console-{os.getpid()}-{id(self)}{again}.log"

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
            raise VmError(f"the guest kernel panicked during {what}", text)
        if i == len(patterns) + 1:
            how = describe_exit(*_wait_exit(self.child))
            tail = _tail(self.console_log) or _empty_console(self.console_log, self.command())
            self.close()
            raise VmError(f"the VM exited during {what} ({how})", tail)
        tail = _tail(self.console_log) or f"the console log is empty: {self.console_log}"
        self.close()
        raise VmError(f"{what} did not finish within {timeout:.0f} s; QEMU was killed", tail)


def _xfer_root(cache: Path) -> Path:
    root = cache / "xfer"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _copy(src: Path, dst: Path, what: str, hint: str | None) -> None:
    """A file copy: the guest shares the host's filesystem at the same paths."""
    try:
        shutil.copyfile(src, dst)
    except OSError as e:
        raise HarnessError(f"{what} failed: {e}", hint) from None


def _tail(log: Path, lines: int = 60) -> str:
    """The console log's last *lines*; "" when it has nothing to show.

    Read as bytes: the terminal ends lines with "\r\r\n", which text mode's
    universal newlines turns into two, halving what the tail shows (a debug
    kernel's panic header fell out of it).
    """
    try:
        text = log.read_bytes().decode(errors="replace")
    except OSError:
        return ""
    text = text.replace("\r", "")
    if not text.strip():
        return ""
    return "console tail:\n" + "\n".join(text.splitlines()[-lines:]) + f"\n(full console log: {log})"


def _empty_console(log: Path, cmd: list[str]) -> str:
    """What an empty console means, and how to see the boot that printed nothing."""
    verbose = [cmd[0], "--verbose", *cmd[1:]]
    return (f"the console log is empty ({log}): neither vng nor QEMU printed anything, so the "
            "guest died before even its early console was up (a triple fault quits QEMU "
            "silently under -no-reboot); to watch the whole boot, run by hand:\n  "
            + shlex.join(verbose))


def _wait_exit(child: pexpect.spawn, grace: float = 5.0) -> tuple[int | None, int | None]:
    """vng's (exit status, signal), waiting *grace* s: at EOF it may still be reaping QEMU."""
    deadline = time.monotonic() + grace
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(0.1)
    return child.exitstatus, child.signalstatus


def describe_exit(status: int | None, signal_number: int | None) -> str:
    """vng's end in words.

    virtme-run exits with QEMU's raw wait status, which the exit code
    truncates to its low byte: QEMU failing with 1 reads 0 here, so 0 only
    says that vng was not killed.
    """
    if signal_number is not None:
        with contextlib.suppress(ValueError):
            return f"vng killed by {signal.Signals(signal_number).name}"
        return f"vng killed by signal {signal_number}"
    if status is None:
        return "vng still running"
    return f"vng exit status {status}"


def _kill(child: pexpect.spawn) -> None:
    """Kill vng, QEMU and anything else in the session's process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(0.1)
    child.close(force=True)
    say("VM stopped")
