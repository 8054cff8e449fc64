"""Python face of the benchmark's native KVM_RUN loop (vmexit_loop.c), and the
call every loop's binding goes through (:func:`call_loop`, :class:`LoopCommon`)."""

from __future__ import annotations

import ctypes
import errno
import os
from ctypes import c_int32, c_uint32, c_uint64
from dataclasses import dataclass

from payload.guest.programs import DONE_PORT
from payload.kvm.vmm import GuestError, GuestTimeout, Vcpu, deadline_alarm
from payload.native import build

END_NAMES = {0: "", 1: "hlt", 2: "done"}
"""``LOOP_END_*`` in kvm_loop.h, as every loop reports its end."""


class LoopCommon(ctypes.Structure):
    """Mirror of ``struct loop_common`` in kvm_loop.h: what every loop reports."""

    _fields_ = [
        ("kvm_runs", c_uint64),
        ("exits", c_uint64),
        ("interrupted", c_uint64),
        ("ns", c_uint64),
        ("done_value", c_uint64),
        ("exit_reason", c_uint32),
        ("end", c_uint32),
        ("error", c_int32),
        ("pad", c_uint32),
    ]


class LoopResult(ctypes.Structure):
    """Mirror of ``struct loop_result`` in vmexit_loop.c (the common counts
    are reachable by their own names, as in ``out.exits``)."""

    _anonymous_ = ("c",)
    _fields_ = [
        ("c", LoopCommon),
        ("io_exits", c_uint64),
        ("mmio_exits", c_uint64),
        ("rings", c_uint64),
    ]


@dataclass(frozen=True)
class NativeResult:
    """Counts and wall time of one native run; ``exits`` means the same as
    :attr:`payload.kvm.vmm.RunResult.exits` (the final exit included)."""

    exits: int
    kvm_runs: int
    io_exits: int
    mmio_exits: int
    interrupted: int
    rings: int
    ns: int
    end: str
    done_value: int

    @property
    def device_exits(self) -> int:
        """Port and MMIO exits before the end: what a device model served."""
        return self.io_exits + self.mmio_exits


def call_loop(fn: ctypes._CFuncPtr, vcpu: Vcpu, args: tuple, out: ctypes.Structure,
              timeout_s: float | None, what: str) -> None:
    """Call a native KVM_RUN loop, ``fn(vcpu_fd, run, *args, timeout_ns, &out)``,
    under :func:`deadline_alarm` (so a guest that never exits still returns),
    and raise for its -errno returns what :meth:`Vcpu.run_to_halt` raises:
    :class:`GuestTimeout`, :class:`GuestError` (-EIO, an exit *what* does not
    handle) or :class:`OSError`."""
    timeout_ns = 0 if timeout_s is None else int(timeout_s * 1e9)
    with deadline_alarm(timeout_s):
        ret = fn(vcpu.fd, vcpu.run_addr, *args, timeout_ns, ctypes.byref(out))
    if ret == -errno.ETIMEDOUT:
        raise GuestTimeout(vcpu.rip(), timeout_s or 0.0)
    if ret == -errno.EIO:
        raise GuestError(out.exit_reason, vcpu.rip(), f"{what}: " + vcpu.describe_exit())
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))


def run_native(
    vcpu: Vcpu,
    ring_fd: int = -1,
    ring_cmd: int = 0,
    done_port: int = DONE_PORT,
    timeout_s: float | None = 10.0,
) -> NativeResult:
    """Run ``vcpu``'s program to its end in C; see vmexit_loop.c.

    With ``ring_fd >= 0`` each device exit costs one ``ioctl(ring_fd,
    ring_cmd)`` too: the userspace-device-model baseline.  Errors raise the
    same exceptions as :meth:`Vcpu.run_to_halt`.
    """
    out = LoopResult()
    call_loop(build.load().vmexit_loop, vcpu, (ring_fd, ring_cmd, done_port), out, timeout_s,
              "native loop")
    return NativeResult(
        exits=out.exits,
        kvm_runs=out.kvm_runs,
        io_exits=out.io_exits,
        mmio_exits=out.mmio_exits,
        interrupted=out.interrupted,
        rings=out.rings,
        ns=out.ns,
        end=END_NAMES.get(out.end, str(out.end)),
        done_value=out.done_value,
    )
