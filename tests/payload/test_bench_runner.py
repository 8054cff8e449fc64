"""The benchmark runner on the real patched kernel, with tiny N; runs as root
inside the test VM (tests/vm/test_in_vm.py loads the doorbell first).

What ``make bench`` reports is only as good as these checks: each mode's
writes must take exactly the path its name says (1 KVM_RUN return or N + 1),
the doorbell must count every one of them, no more, no less, the guest must
count N iterations, a buffer mode's buffer must hold the last write, a
hypercall mode's status must be its path's answer, each eventfd mode's
registration must be of the ioctl its name says, and a scale row's other
registrations must really be on its bus.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from payload.guest.hypercall import HV_STATUS_INVALID_HYPERCALL_INPUT
from payload.guest.programs import MMIO_ADDR, PIO_PORT
from payload.vmexit import checks, doorbells, modes
from payload.vmexit.modes import ACCESS_SIZE, IOFD_RANGE_LEN
from payload.vmexit.rig import Rig
from payload.vmexit.runner import measure

if not os.environ.get("DOORBELL_KO"):
    pytest.skip(
        "DOORBELL_KO is not set; these tests run as root inside the test VM",
        allow_module_level=True,
    )

N = 50
T = 3


@pytest.fixture(scope="module")
def raw() -> dict:
    return measure(N, T)


def test_every_mode_ran_every_round_with_exact_counts(raw: dict) -> None:
    assert raw["warmup_problems"] == []
    assert checks.verify(raw).problems == []
    assert raw["modes"] == list(modes.ALL_NAMES)
    assert "hc" in raw["modes"] and "hc-floor" in raw["modes"] and "iofd-mmio+990" in raw["modes"]
    assert raw["rounds"] == [modes.run_order(list(modes.ALL_NAMES), t) for t in range(T)]
    assert [(t["trial"], t["mode"]) for t in raw["runs"]] == [
        (t, name) for t in range(T) for name in raw["rounds"][t]
    ], "modes must be interleaved round by round, the order run_order's for the round"
    assert raw["rounds"][0] != raw["rounds"][1]


@pytest.mark.parametrize("name", modes.ALL_NAMES)
def test_exits_and_doorbell_per_mode(raw: dict, name: str) -> None:
    """The expected counts written out by name, not asked of the modes."""
    mode = modes.get(name)
    runs = [t for t in raw["runs"] if t["mode"] == name]
    assert len(runs) == T
    for t in runs:
        userspace = name.startswith("userspace-")
        assert t["kvm_runs"] == t["exits"] == (N + 1 if userspace else 1)
        assert t["rings"] == (N if userspace else 0)
        assert t["io_exits"] == (N if name == "userspace-pio" else 0)
        assert t["mmio_exits"] == (N if name == "userspace-mmio" else 0)
        assert t["doorbell"] == (0 if name in ("kernel-pio", "cpuid", "hc-floor") else N)
        assert t["eventfd_left"] == 0
        assert t["end"] == "done" and t["ns"] > 0
        assert t["done_value"] == N
        assert t["status"] == {"hc": 0, "hc-floor": 0xFFFFFC18}.get(name)
        if mode.buffered:
            assert bytes.fromhex(t["buffer"]) == bytes([modes.LAST_WRITE]) + bytes(
                [modes.BUFFER_RESET]) * (IOFD_RANGE_LEN - ACCESS_SIZE)
        else:
            assert t["buffer"] is None


def _path_by_hand(name: str) -> dict | None:
    base, _, others = name.partition("+")
    if base.startswith(("iofd-", "ioeventfd-")):
        own, other = ("KVM_IOFD", "KVM_IOEVENTFD") if base.startswith("iofd-") else (
            "KVM_IOEVENTFD", "KVM_IOFD")
        proof = {"registered_with": own, "other": other, "other_deassign": "ENOENT",
                 "own_deassign": "ok"}
    elif base == "hc":
        proof = {"registered_with": "KVM_HYPERV_EVENTFD", "own_deassign": "ok"}
    else:
        return None
    return {**proof, **({"others_signalled": 0, "others_deassigned": int(others)} if others else {})}


def test_every_eventfd_mode_proved_its_path(raw: dict) -> None:
    assert raw["paths"] == {name: _path_by_hand(name) for name in modes.ALL_NAMES
                            if _path_by_hand(name)}
    assert set(raw["paths"]) >= {"iofd-buffer-pio", "iofd-buffer-mmio", "ioeventfd-mmio-len0",
                                 "hc", "iofd-pio+990", "iofd-mmio+990", "ioeventfd-pio+990"}


def test_the_kernel_accepts_1024_ioeventfds_on_one_bus(raw: dict) -> None:
    """kvm_io_bus_register_dev() leaves ioeventfds out of NR_IOBUS_DEVS (1000):
    all 1024 doorbells register, each on its own eventfd; the one KVM_IOFD
    over the same 4 KiB does too."""
    array = raw["array"]
    assert (array["doorbells"], array["doorbell_bytes"], array["eventfds"]) == (1024, 4, 1024)
    assert len(array["repeats"]) == doorbells.REPEATS
    for rep in array["repeats"]:
        assert (rep["ioeventfd"]["accepted"], rep["ioeventfd"]["refused"]) == (1024, None)
        assert (rep["iofd"]["accepted"], rep["iofd"]["refused"]) == (1, None)
        assert rep["ioeventfd"]["register_ns"] > rep["iofd"]["register_ns"] > 0


def test_hc_with_its_connection_unbound_fails_the_status_and_the_doorbell() -> None:
    """Deassign hc's connection before a trial: the hypercalls still stay in
    the kernel, but KVM's Hyper-V code answers INVALID_HYPERCALL_INPUT and
    nothing rings; the checks must say both."""
    with Rig(modes.get("hc"), N) as rig:
        rig.vm.hyperv_eventfd(modes.HC_CONN_ID, rig.efd, deassign=True)
        trial = rig.run(trial=0)
    assert trial.kvm_runs == 1 and trial.status == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert checks.trial_problems(vars(trial), N) == [
        f"hc trial 0: doorbell = 0, must be {N}",
        "hc trial 0: status = 0x00000003, must be 0x00000000"]


def test_hc_floor_on_a_hyperv_vcpu_is_not_the_floor() -> None:
    """Offer hc-floor's vCPU Hyper-V: its hypercall then goes to the Hyper-V
    code, which answers something else than -KVM_ENOSYS, and the status
    check says so."""
    with Rig(modes.get("hc-floor"), N) as rig:
        rig.vcpu.enable_hyperv()
        trial = rig.run(trial=0)
    assert trial.kvm_runs == 1 and trial.status != 0xFFFFFC18
    assert checks.trial_problems(vars(trial), N) == [
        f"hc-floor trial 0: status = {trial.status:#010x}, must be 0xfffffc18"]


def test_hc_runs_again_from_real_mode() -> None:
    """Each trial starts in real mode, though the last one left CR0.PE set."""
    with Rig(modes.get("hc"), N) as rig:
        trials = [rig.run(trial=t) for t in range(3)]
        assert rig.vcpu.get_sregs().cr0 & 1, "the program ran in protected mode"
    for t in trials:
        assert checks.trial_problems(vars(t), N) == []


@pytest.mark.parametrize("name", ["iofd-pio+10", "iofd-mmio+10", "ioeventfd-pio+10"])
def test_a_scale_rows_neighbours_are_on_its_bus(name: str) -> None:
    """A registration of the same kind at a neighbour's address is refused
    (EEXIST): the neighbours are really there, on the mode's bus."""
    mode = modes.get(name)
    pio = mode.bus == "pio"
    with Rig(mode, N) as rig:
        assert len(rig.neighbours) == 10
        for addr in (rig.neighbours[0], rig.neighbours[-1]):
            with pytest.raises(OSError) as e:
                if mode.registration == "KVM_IOFD":
                    rig.vm.assign_iofd(addr, 1, rig.neighbour_fd, pio=pio)
                else:
                    rig.vm.ioeventfd(addr, 1, rig.neighbour_fd, pio=pio)
            assert e.value.errno == errno.EEXIST
        assert checks.trial_problems(vars(rig.run(trial=0)), N) == []
        proof = rig.prove_path()
    assert checks.path_problems(mode, proof) == []
    assert proof["others_deassigned"] == 10 and proof["others_signalled"] == 0


def test_swapping_iofd_for_ioeventfd_passes_the_counts_but_not_the_path() -> None:
    """The issue's point: an iofd mode whose rig registered KVM_IOEVENTFD
    instead keeps every write in the kernel and rings the same doorbell, so
    only the path proof can tell."""
    with Rig(modes.get("iofd-pio"), N) as rig:
        rig.vm.deassign_iofd(PIO_PORT, IOFD_RANGE_LEN, rig.efd, pio=True)
        rig.vm.ioeventfd(PIO_PORT, ACCESS_SIZE, rig.efd, pio=True)
        trial = rig.run(trial=0)
        assert checks.trial_problems(vars(trial), N) == []
        proof = rig.prove_path()
    # KVM_IOFD finds no iofd at the mode's range; KVM_IOEVENTFD, asked with
    # the iofd's parameters (length 8), does not find the 1-byte ioeventfd
    # either: no iofd was there, which is what fails.
    assert proof == {"registered_with": "KVM_IOFD", "other": "KVM_IOEVENTFD",
                     "other_deassign": "ENOENT", "own_deassign": "ENOENT"}
    assert checks.path_problems(modes.get("iofd-pio"), proof) == [
        "iofd-pio path: own_deassign = 'ENOENT', must be 'ok'"]


def test_an_ioeventfd_mode_registered_as_iofd_fails_the_path() -> None:
    with Rig(modes.get("ioeventfd-mmio"), N) as rig:
        rig.vm.ioeventfd(MMIO_ADDR, ACCESS_SIZE, rig.efd, deassign=True)
        rig.vm.assign_iofd(MMIO_ADDR, ACCESS_SIZE, rig.efd)
        trial = rig.run(trial=0)
        assert checks.trial_problems(vars(trial), N) == []
        proof = rig.prove_path()
    assert checks.path_problems(modes.get("ioeventfd-mmio"), proof) != []


def test_the_len0_ioeventfd_really_has_length_0() -> None:
    """A len=1 deassign does not find it (ENOENT): the mode would otherwise
    be a second ioeventfd-mmio under another name."""
    with Rig(modes.get("ioeventfd-mmio-len0"), N) as rig:
        with pytest.raises(OSError) as e:
            rig.vm.ioeventfd(MMIO_ADDR, ACCESS_SIZE, rig.efd, deassign=True)
        assert e.value.errno == errno.ENOENT
        assert rig.prove_path() == checks.expected_path(rig.mode)


def test_a_buffer_that_is_not_written_is_caught() -> None:
    """Re-register the buffer mode's range without its buffer: the writes
    still stay in the kernel and ring the doorbell, and only the buffer check
    sees that nothing kept the value."""
    mode = modes.get("iofd-buffer-pio")
    with Rig(mode, N) as rig:
        rig.vm.deassign_iofd(PIO_PORT, IOFD_RANGE_LEN, rig.efd, pio=True)
        rig.vm.assign_iofd(PIO_PORT, IOFD_RANGE_LEN, rig.efd, pio=True)
        trial = rig.run(trial=0)
    assert checks.trial_problems(vars(trial), N) == [
        f"iofd-buffer-pio trial 0: buffer = {'a5' * IOFD_RANGE_LEN!r}, "
        f"must be {mode.final_buffer.hex()!r}"]
    assert trial.kvm_runs == 1 and trial.doorbell == N


def test_a_doorbell_that_misses_signals_is_caught() -> None:
    """Detach the doorbell from iofd-pio's eventfd: the writes still stay in
    the kernel, but nothing counts them, and the checks must say so."""
    with Rig(modes.get("iofd-pio"), N) as rig:
        assert rig.doorbell is not None
        rig.doorbell.detach()
        trial = rig.run(trial=0)
    problems = checks.trial_problems(vars(trial), N)
    assert f"iofd-pio trial 0: doorbell = 0, must be {N}" in problems
    assert f"iofd-pio trial 0: eventfd_left = {N}, must be 0" in problems
    assert trial.kvm_runs == 1


def test_runner_cli_writes_raw_that_the_checks_accept(tmp_path: Path) -> None:
    """The raw file passes the same checks the host's report applies first."""
    out = tmp_path / "raw.json"
    proc = subprocess.run(
        [sys.executable, "-m", "payload.vmexit.runner", "--iterations", str(N), "--trials", "1",
         "--modes", "iofd-pio,kernel-pio", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(out.read_text())
    assert raw["kernel"] == os.uname().release
    assert raw["array"]["repeats"][0]["iofd"]["accepted"] == 1
    assert checks.verify(raw).problems == []
    assert set(raw["modes"]) == {"iofd-pio", "kernel-pio"}
    assert [t["kvm_runs"] for t in raw["runs"] if t["mode"] == "iofd-pio"] == [1]
    assert [t["doorbell"] for t in raw["runs"] if t["mode"] == "iofd-pio"] == [N]
