"""The doorbell-bank scenario (payload.device) on the patched kernel, small.

Checks the scenario's correctness, not its targets: a short run of all
three variants passes every check (exits, signals, consumed tails,
registrations, ordering: payload.device.checks, which the host applies to
``make bench``'s run), the registers hold the guest's last writes, the
exit check catches a doorbell that KVM no longer claims, and the CLI prints
the documented JSON.  The timing targets are the host's (``make bench``),
never asserted here.

Skipped where KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is 0 (an unpatched kernel).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from payload.device import checks, model, runner
from payload.device.rig import BankRig
from payload.guest import queues
from payload.kvm import uapi
from payload.kvm.vmm import Vm

WRITES = 300
ROUNDS = 2
SEED = 16
REPO = Path(__file__).resolve().parents[2]


def _why_not() -> str | None:
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist (is kvm_intel/kvm_amd loaded?)"
    try:
        with Vm() as vm:
            if not vm.check_extension(uapi.KVM_CAP_IOFD):
                return "KVM_CHECK_EXTENSION(KVM_CAP_IOFD) is 0: not the patched kernel"
    except OSError as exc:
        return f"cannot create a VM: {exc}"
    return None


WHY_NOT = _why_not()
if WHY_NOT:
    pytest.skip(WHY_NOT, allow_module_level=True)


def documented_top_level_keys() -> list[str]:
    doc = runner.__doc__ or ""
    block = doc[doc.index("The top-level object::"):doc.index("\nwhere::")]
    return re.findall(r"^  (\w+) ", block, re.M)


@pytest.fixture(scope="module")
def small_run() -> dict[str, Any]:
    return runner.measure(WRITES, ROUNDS, SEED)


def test_small_run_passes_every_check(small_run: dict[str, Any]) -> None:
    found, problems = checks.output_checks(small_run)
    assert problems == []
    assert [c for c in found if not c["ok"]] == []
    assert len(found) == 5 * len(model.VARIANTS)


@pytest.mark.parametrize("variant", model.VARIANTS, ids=lambda v: v.name)
def test_each_run_counts(small_run: dict[str, Any], variant: model.Variant) -> None:
    entry = small_run["variants"][variant.key]
    runs = [entry["warmup"], *entry["runs"]]
    assert [r["round"] for r in runs] == [-1, *range(ROUNDS)]
    for r in runs:
        assert r["problems"] == []
        assert r["end"] == "done" and r["done_value"] == WRITES
        assert r["userspace_exits"] == variant.expected_exits(WRITES)
        assert r["doorbell_exits"] == (WRITES if variant.exits_per_write else 0)
        assert r["signals"] == WRITES
        assert 1 <= r["wakeups"] <= WRITES
        assert r["tails_ok"] is True
        assert r["entries_consumed"] == small_run["pattern"]["entries"]
        assert r["ns"] > 0
    assert entry["path"]["registrations"] == variant.registrations


def test_c_has_one_userspace_exit_per_run(small_run: dict[str, Any]) -> None:
    c = small_run["variants"]["c"]
    assert {r["userspace_exits"] for r in [c["warmup"], *c["runs"]]} == {1}


def test_output_has_the_documented_keys_and_timed_runs(small_run: dict[str, Any]) -> None:
    assert list(small_run) == documented_top_level_keys()
    assert small_run["schema"] == checks.SCHEMA
    assert small_run["order"] == [["a", "b", "c"], ["b", "c", "a"]]
    for entry in small_run["variants"].values():  # what the host's targets pair
        assert [r["round"] for r in entry["runs"]] == list(range(ROUNDS))
        assert all(r["ns"] > r["device_cpu_ns"] >= 0 for r in entry["runs"])
    json.dumps(small_run)  # serialisable as it is


@pytest.mark.parametrize("key", ["a", "b", "c"])
def test_registers_hold_the_last_writes(key: str) -> None:
    """Independently of the device thread: after a run, the memory the
    device reads (the VMM's array, the guest's shadow, the iofd's buffer)
    holds every queue's last tail."""
    pattern = model.tail_pattern(WRITES, SEED)
    with BankRig(model.get(key), pattern) as rig:
        assert rig.run(0)["problems"] == []
        if rig.regs is not None:
            got = [rig.regs.load(4 * q, 4) for q in range(queues.QUEUES)]
        else:
            raw = rig.vm.read(queues.SHADOW_BASE, queues.BANK_LEN)
            got = [int.from_bytes(raw[4 * q:4 * q + 4], "little") for q in range(queues.QUEUES)]
    assert got == model.last_tails(pattern)


def test_an_unclaimed_doorbell_fails_the_exit_check() -> None:
    """Take (c)'s iofd away before a run: every doorbell write now exits.
    The VMM's fallback keeps the device right (it stores into the same
    buffer and kicks), so only the exit check can tell, and it does."""
    pattern = model.tail_pattern(WRITES, SEED)
    with BankRig(model.get("c"), pattern) as rig:
        rig.vm.deassign_iofd(queues.DOORBELL_BASE, queues.BANK_LEN, rig.efd)
        run = rig.run(0)
    assert run["userspace_exits"] == WRITES + 1
    assert run["tails_ok"] is True and run["signals"] == WRITES
    assert f"{WRITES + 1} userspace exits, expected 1" in run["problems"]


def test_cli_prints_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "payload.device", "--writes", "100",
                           "--rounds", "1"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["writes"] == 100 and out["rounds"] == 1
    assert checks.output_checks(out)[1] == []
    assert "(c) iofd-buffer: " in proc.stderr and " us/write " in proc.stderr
