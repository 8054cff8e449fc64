"""``python -m harness nvme``: QEMU's NVMe controller on KVM_IOFD, measured end to end.

Builds the patched QEMU and the L2 guest (:mod:`harness.nvme.inputs`),
boots the test VM, and runs :mod:`payload.nvme.runner` in it three times:
the table's wall-clock run (its rounds interleaved as ``make bench``
interleaves modes; exits counted by L1's KVM statistics), the
write-and-verify job, and, under TCG, the same table once more with the
VM under icount, where L1's clock counts instructions.  The host then
renders ``results/nvme.{json,md,png}`` (:mod:`harness.nvme.report`) and
prints the targets as met or missed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import paths
from harness.errors import HarnessError
from harness.kernel.pipeline import Kernel
from harness.machine import Machine
from harness.nvme import inputs, report
from harness.nvme.inputs import Inputs
from harness.progress import phase, say
from harness.vm import boot, nudge, session
from harness.vm.boot import BootOptions
from harness.vm.session import Session
from payload.nvme import configs

RAW = {"plain": "raw-nvme.json", "verify": "raw-nvme-verify.json",
       "counted": "raw-nvme-icount.json"}
L2_BOOT_LIMIT = 900.0
"""Seconds for one L2 boot and its jobs: a limit for a hang, not an expectation."""
ICOUNT_BUDGET = 1800.0
"""Host seconds for the whole icount pass.  Its L2 boots have been seen to
run for more than 10 minutes without reaching fio (the plain pass needs
10 s); past this budget the pass is given up and its targets reported as
not measured, rather than holding make nvme for hours."""


@dataclasses.dataclass(frozen=True)
class Size:
    ios: int = 2000
    rounds: int = 2
    verify_qd: int = 16
    verify_size: str = "16M"


@contextmanager
def l1(opts: BootOptions, kernel: Kernel) -> Iterator[Session]:
    """The test VM booted for L2 guests: under TCG with its sshd up and the
    host nudging it (:mod:`harness.vm.nudge`), so that a lost interrupt
    does not stop it for good.  Under icount no nudge is sent: it would add
    instructions at moments the host's clock decides."""
    if opts.accel.accel != "tcg" or opts.icount:
        with session.boot(opts, kernel) as s:
            yield s
        return
    opts = dataclasses.replace(opts, ssh_port=nudge.free_port())
    with session.boot(opts, kernel) as s, nudge.Nudger(opts.ssh_port) as n:
        yield s
    say(f"the host nudged the VM {n.count} times")


def run_runner(machine: Machine, got: Inputs, args: str, name: str, out_dir: Path,
               jobs: int, limit: float | None = None) -> dict[str, Any]:
    """One runner invocation there; its JSON, also kept in *out_dir*/*name*.
    *out_dir* must be shared with the machine (``results/`` is): the L2
    consoles are written to its ``nvme-console/<name without .json>/``.  *jobs*: L2 boots, for
    the time limit, unless *limit* (host seconds) is given."""
    remote = f"{machine.scratch}/{name}"
    timeout = limit if limit is not None else L2_BOOT_LIMIT * jobs + 60
    r = machine.run(machine.python(f"payload.nvme.runner {got.runner_args()} {args} "
                                   f"--timeout {L2_BOOT_LIMIT:.0f} --out {remote} "
                                   f"--logs {out_dir / 'nvme-console' / Path(name).stem}"),
                    timeout, what=f"the NVMe runner ({name})")
    for line in r.stderr.splitlines():
        say(f"{machine.label}: {line}")
    if r.rc != 0:
        raise machine.failure("the NVMe runner failed", r.rc, r.stderr or r.stdout)
    machine.get(remote, out_dir / name)
    return json.loads((out_dir / name).read_text())


def _measure(kernel: Kernel, opts: BootOptions, got: Inputs, size: Size, out_dir: Path,
             counted: bool) -> dict[str, Any]:
    raws: dict[str, Any] = {}
    with l1(opts, kernel) as s:
        # One L2 boot per configuration and queue depth (payload.nvme.runner).
        rounds = 1 if counted else size.rounds
        n = len(configs.CONFIGS) * len(configs.QDS) * rounds
        how = " under icount (instructions)" if counted else ""
        with phase(f"NVMe: {len(configs.CONFIGS)} configurations x QD "
                   f"{', '.join(map(str, configs.QDS))} x {size.ios} I/Os x {rounds} rounds{how}"):
            key = "counted" if counted else "plain"
            raws[key] = run_runner(s, got, f"--ios {size.ios} --rounds {rounds}"
                                           f"{' --counted' if counted else ''}",
                                   RAW[key], out_dir, n, ICOUNT_BUDGET if counted else None)
        if not counted:
            with phase(f"NVMe: write and verify, P1 at QD{size.verify_qd} over "
                       f"{size.verify_size}"):
                raws["verify"] = run_runner(
                    s, got, f"--mode verify --configs P1 --qd {size.verify_qd} "
                            f"--size {size.verify_size} --ios {size.ios}",
                    RAW["verify"], out_dir, 1)
    return raws


def run(cfg_inputs: Inputs, kernel: Kernel, opts: BootOptions, size: Size = Size(),
        out_dir: Path = paths.RESULTS) -> int:
    """The whole ``make nvme``; the exit status (1 when a target is missed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in (*RAW.values(), *report.OUTPUTS):
        (out_dir / f).unlink(missing_ok=True)
    raws = _measure(kernel, opts, cfg_inputs, size, out_dir, counted=False)
    icount = ""
    if opts.accel.accel == "tcg":
        try:
            raws.update(_measure(kernel, boot.counting(opts), cfg_inputs, size, out_dir,
                                 counted=True))
        except HarnessError as e:
            icount = f"not measured ({e})"
            say(f"the icount pass failed, so instructions per I/O are not measured: {e}")
    else:
        say("no icount run: QEMU counts instructions only under TCG; the targets are decided on "
            "wall-clock time")
    env = {"kernel": raws["plain"]["kernel"], "accel": opts.accel.accel, "ios": size.ios,
           "rounds": size.rounds, "qemu_series": cfg_inputs.qemu_series,
           "qemu_debian": cfg_inputs.qemu_debian, "qemu_patched": cfg_inputs.qemu_patched,
           "host_load": round(os.getloadavg()[0], 2), "icount": icount}
    with phase("rendering nvme.json, nvme.md and nvme.png"):
        doc = report.render(raws["plain"], raws.get("counted"), raws.get("verify"), env, out_dir)
    print((out_dir / "nvme.md").read_text())
    missed = [t for t in doc["targets"] if t["met"] is False]
    unmeasured = [t for t in doc["targets"] if t["met"] is None]
    if unmeasured:
        say(f"{len(unmeasured)} target(s) not measured: "
            + "; ".join(t["rule"] for t in unmeasured))
    if missed:
        say(f"{len(missed)} target(s) missed: " + "; ".join(t["rule"] for t in missed))
        return 1
    say("every NVMe target met" if not unmeasured else "no NVMe target missed")
    return 0


def main(cfg: Any, kernel: Kernel, size: Size, build_only: bool) -> int:
    got = inputs.make(cfg, kernel)
    say(f"NVMe inputs: Debian QEMU {got.qemu_debian}, patched {got.qemu_patched} "
        f"(series {got.qemu_series}), L2 {got.kernel} + {got.initrd}")
    if build_only:
        return 0
    if size.ios < 1 or size.rounds < 1:
        raise HarnessError("--ios and --rounds must be at least 1")
    return run(got, kernel, boot.options(cfg), size)
