"""One L2 Linux on QEMU's NVMe controller, stepped through its fio jobs.

The L2 guest's init (``harness/nvme/l2-init``) prints a marker line on its
serial console before and after each fio job and then waits for a line
back.  This side opens the counting window when it reads the start marker
and closes it at the end marker, before it answers either, so a window
holds the job and nothing of the boot, the console output or the next
job.  The wait for the answer is what makes that exact: the guest stands
still while the counters are read.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from payload.nvme.configs import Config, device_arg

START = re.compile(r"@@IOFD-START qd=(\d+)")
END = re.compile(r"@@IOFD-END qd=(\d+) rc=(-?\d+)")
ERROR = re.compile(r"@@IOFD-ERROR (.*)")
FIRMWARE = ("/usr/share/seabios", "/usr/share/qemu")
"""Where Debian keeps the BIOS and option ROMs a QEMU built from source
does not know about (``-L``)."""


class L2Error(RuntimeError):
    """The L2 guest or its QEMU failed; the message ends with the console's tail."""


@dataclass(frozen=True)
class Boot:
    """How to start one L2: which QEMU, kernel and initramfs, which disk."""

    qemu: Path
    kernel: Path
    initrd: Path
    disk: str
    """``null`` (QEMU's null-co block driver, for IOPS) or the path of a raw
    image (for the verify job)."""
    memory: str = "512M"

    def command(self, config: Config, mode: str, qds: list[int], ios: int, size: str) -> list[str]:
        drive = ("driver=null-co,size=1G,if=none,id=d0" if self.disk == "null"
                 else f"file={self.disk},format=raw,if=none,id=d0")
        append = (f"console=ttyS0 quiet panic=-1 iofd.mode={mode} "
                  f"iofd.qd={','.join(map(str, qds))} iofd.ios={ios} iofd.size={size}")
        firmware = [a for d in FIRMWARE if Path(d).is_dir() for a in ("-L", d)]
        # qemu64: with -cpu host the 7.3 L2 WARNs in xstate init and oopses.
        return [str(self.qemu), *firmware, "-nodefaults", "-display", "none", "-no-reboot",
                "-machine", "pc,accel=kvm", "-cpu", "qemu64", "-smp", "1", "-m", self.memory,
                "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", append,
                "-serial", "stdio", "-monitor", "none",
                "-drive", drive, "-device", device_arg(config, "d0")]


@dataclass
class Job:
    qd: int
    rc: int
    ns: int
    """L1's CLOCK_MONOTONIC across the window: instructions under icount."""
    counts: dict[str, Any]
    fio: dict[str, Any] | None = None


@dataclass
class _Console:
    proc: subprocess.Popen[bytes]
    log: Any
    tail: list[str] = field(default_factory=list)
    buf: bytes = b""

    def line(self, deadline: float) -> str:
        """The next console line; L2Error at the deadline or when QEMU exits."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise L2Error(f"the L2 guest said nothing for too long{self.context()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    rc = self.proc.wait()
                    raise L2Error(f"QEMU exited with status {rc}{self.context()}")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        text = raw.decode(errors="replace").rstrip("\r")
        self.log.write(text + "\n")
        self.tail = [*self.tail, text][-40:]
        return text

    def answer(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def context(self) -> str:
        return ": last console lines:\n  " + "\n  ".join(self.tail) if self.tail else ""


def run(boot: Boot, config: Config, mode: str, qds: list[int], ios: int, size: str,
        window: Callable[[], Any], log: Path, timeout: float) -> list[Job]:
    """Boot one L2 with *config*, run its fio job at each of *qds*, and
    return them; *window* makes a fresh counting window (``start()`` and
    ``stop()``, :class:`payload.nvme.counters.Window`).  *log* gets the
    console; *timeout* bounds the whole boot."""
    cmd = boot.command(config, mode, qds, ios, size)
    deadline = time.monotonic() + timeout
    with open(log, "w", buffering=1) as f:
        f.write(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        con = _Console(proc, f)
        try:
            return _steps(con, qds, window, deadline)
        finally:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _steps(con: _Console, qds: list[int], window: Callable[[], Any],
           deadline: float) -> list[Job]:
    jobs: list[Job] = []
    pending: list[Job] = []
    while True:
        text = con.line(deadline)
        if m := ERROR.search(text):
            raise L2Error(f"the L2 guest failed: {m.group(1)}{con.context()}")
        if m := START.search(text):
            w = window()
            w.start()
            t0 = time.monotonic_ns()
            con.answer()
            text = con.line(deadline)
            while not (m2 := END.search(text)):
                if e := ERROR.search(text):
                    raise L2Error(f"the L2 guest failed: {e.group(1)}{con.context()}")
                text = con.line(deadline)
            ns = time.monotonic_ns() - t0
            counts = w.stop()
            con.answer()
            job = Job(int(m2.group(1)), int(m2.group(2)), ns, counts)
            jobs.append(job)
            pending.append(job)
        elif "@@IOFD-JSON-BEGIN" in text:
            body = []
            while "@@IOFD-JSON-END" not in (t := con.line(deadline)):
                body.append(t)
            job = pending.pop(0) if pending else None
            if job is None:
                raise L2Error(f"fio output with no job before it{con.context()}")
            job.fio = _json(body, con)
        elif "@@IOFD-DONE" in text:
            got = [j.qd for j in jobs]
            if got != qds:
                raise L2Error(f"the L2 guest ran queue depths {got}, not {qds}{con.context()}")
            return jobs


def _json(lines: list[str], con: _Console) -> dict[str, Any]:
    text = "\n".join(lines)
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError as e:
        raise L2Error(f"fio's JSON did not parse ({e}){con.context()}") from e
