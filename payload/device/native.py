"""Build, load and call bank_loop.c, the scenario's native KVM_RUN loop.

Built by :mod:`payload.native.build`, like the benchmark's loop.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from ctypes import c_int32, c_uint32, c_uint64
from dataclasses import dataclass
from pathlib import Path

from payload.guest.memmap import DONE_PORT
from payload.kvm.vmm import GuestError, GuestTimeout, Vcpu, deadline_alarm
from payload.native import build as native_build

SOURCE = Path(__file__).with_name("bank_loop.c")
END_NAMES = {0: "", 1: "hlt", 2: "done"}


class BankLoopResult(ctypes.Structure):
    """Mirror of ``struct bank_loop_result`` in bank_loop.c."""

    _fields_ = [
        ("kvm_runs", c_uint64),
        ("exits", c_uint64),
        ("doorbell_writes", c_uint64),
        ("doorbell_reads", c_uint64),
        ("stray_exits", c_uint64),
        ("interrupted", c_uint64),
        ("kicks", c_uint64),
        ("ns", c_uint64),
        ("done_value", c_uint64),
        ("exit_reason", c_uint32),
        ("end", c_uint32),
        ("error", c_int32),
        ("pad", c_uint32),
    ]


@dataclass(frozen=True)
class BankRun:
    """Counts and wall time of one run of the loop (``exits`` includes the
    final DONE exit, like :attr:`payload.kvm.vmm.RunResult.exits`)."""

    kvm_runs: int
    exits: int
    doorbell_writes: int
    doorbell_reads: int
    stray_exits: int
    interrupted: int
    kicks: int
    ns: int
    end: str
    done_value: int


def build(out_dir: Path | None = None) -> Path:
    """The compiled library's path, compiled by :func:`payload.native.build.build`
    (same compiler, flags, cache and atomic rename).  ``out_dir``: where to build
    instead of the cache (the host builds it into the directory it shares with
    the test VM, as for the benchmark's loop: compiling under TCG costs seconds)."""
    return native_build.build(out_dir=out_dir, source=SOURCE)


@functools.cache
def load() -> ctypes.CDLL:
    """The loaded library with ``bank_loop``'s prototype set."""
    lib = ctypes.CDLL(str(build()))
    lib.bank_loop.argtypes = (
        ctypes.c_int,  # vcpu_fd
        ctypes.c_void_p,  # struct kvm_run *
        ctypes.c_uint64,  # bank_base
        ctypes.c_uint32,  # bank_len
        ctypes.c_void_p,  # uint32_t *regs (NULL: keep no values)
        ctypes.c_int,  # kick_fd (-1: no kick)
        ctypes.c_int,  # done_port
        ctypes.c_int64,  # timeout_ns
        ctypes.c_void_p,  # struct bank_loop_result *
    )
    lib.bank_loop.restype = ctypes.c_int
    return lib


def run_bank(vcpu: Vcpu, bank_base: int, bank_len: int, regs: int | None, kick_fd: int,
             timeout_s: float | None = 30.0) -> BankRun:
    """Run ``vcpu`` to DONE in C; doorbell exits store into ``regs`` (an
    address of ``bank_len`` bytes, or None) and kick ``kick_fd`` (or -1).
    Raises what :meth:`Vcpu.run_to_halt` raises for a broken guest."""
    lib = load()
    out = BankLoopResult()
    timeout_ns = 0 if timeout_s is None else int(timeout_s * 1e9)
    with deadline_alarm(timeout_s):
        ret = lib.bank_loop(vcpu.fd, vcpu.run_addr, bank_base, bank_len, regs, kick_fd,
                            DONE_PORT, timeout_ns, ctypes.byref(out))
    if ret == -errno.ETIMEDOUT:
        raise GuestTimeout(vcpu.rip(), timeout_s or 0.0)
    if ret == -errno.EIO:
        raise GuestError(out.exit_reason, vcpu.rip(), "bank loop: " + vcpu.describe_exit())
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return BankRun(
        kvm_runs=out.kvm_runs, exits=out.exits, doorbell_writes=out.doorbell_writes,
        doorbell_reads=out.doorbell_reads, stray_exits=out.stray_exits,
        interrupted=out.interrupted, kicks=out.kicks, ns=out.ns,
        end=END_NAMES.get(out.end, str(out.end)), done_value=out.done_value,
    )
