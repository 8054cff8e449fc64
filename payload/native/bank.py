"""Build, load and call bank_loop.c, the doorbell-bank scenario's native KVM_RUN loop.

Built by :mod:`payload.native.build` and run by :func:`payload.native.loop.call_loop`,
like the benchmark's loop (:mod:`payload.native.loop`), beside which it lives.
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint64
from dataclasses import dataclass
from pathlib import Path

from payload.guest.memmap import DONE_PORT
from payload.kvm.vmm import Vcpu
from payload.native import build as native_build
from payload.native.loop import END_NAMES, LoopCommon, call_loop

SOURCE = Path(__file__).with_name("bank_loop.c")


class BankLoopResult(ctypes.Structure):
    """Mirror of ``struct bank_loop_result`` in bank_loop.c."""

    _anonymous_ = ("c",)
    _fields_ = [
        ("c", LoopCommon),
        ("doorbell_writes", c_uint64),
        ("doorbell_reads", c_uint64),
        ("stray_exits", c_uint64),
        ("kicks", c_uint64),
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


# bank_loop()'s prototype: (vcpu_fd, struct kvm_run *, bank_base, bank_len,
# uint32_t *regs (NULL: keep no values), kick_fd (-1: no kick), done_port,
# timeout_ns, struct bank_loop_result *).
ARGTYPES = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p,
            ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)


def run_bank(vcpu: Vcpu, bank_base: int, bank_len: int, regs: int | None, kick_fd: int,
             timeout_s: float | None = 30.0) -> BankRun:
    """Run ``vcpu`` to DONE in C; doorbell exits store into ``regs`` (an
    address of ``bank_len`` bytes, or None) and kick ``kick_fd`` (or -1).
    Raises what :meth:`Vcpu.run_to_halt` raises for a broken guest."""
    out = BankLoopResult()
    call_loop(native_build.load(SOURCE, "bank_loop", ARGTYPES).bank_loop, vcpu,
              (bank_base, bank_len, regs, kick_fd, DONE_PORT), out, timeout_s, "bank loop")
    return BankRun(
        kvm_runs=out.kvm_runs, exits=out.exits, doorbell_writes=out.doorbell_writes,
        doorbell_reads=out.doorbell_reads, stray_exits=out.stray_exits,
        interrupted=out.interrupted, kicks=out.kicks, ns=out.ns,
        end=END_NAMES.get(out.end, str(out.end)), done_value=out.done_value,
    )
