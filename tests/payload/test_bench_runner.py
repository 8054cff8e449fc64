"""The benchmark runner on the real patched kernel, with tiny N; runs as root
inside the test VM (tests/vm/test_in_vm.py loads the doorbell first).

What ``make bench`` reports is only as good as these counts: each mode's
writes must take exactly the path its name says (1 KVM_RUN return or N + 1)
and the doorbell must count every one of them, no more, no less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from payload.bench import checks, modes
from payload.bench.rig import Rig
from payload.bench.runner import measure

if not os.environ.get("DOORBELL_KO"):
    pytest.skip(
        "DOORBELL_KO is not set; these tests run as root inside the test VM",
        allow_module_level=True,
    )

N = 50
T = 2


@pytest.fixture(scope="module")
def raw() -> dict:
    return measure(N, T)


def test_every_mode_ran_every_trial_with_exact_counts(raw: dict) -> None:
    assert raw["problems"] == []
    assert checks.raw_problems(raw) == []
    assert raw["modes"] == list(modes.NAMES)
    assert [(t["trial"], t["mode"]) for t in raw["runs"]] == [
        (t, name) for t in range(T) for name in modes.NAMES
    ], "modes must be interleaved trial by trial"


@pytest.mark.parametrize("name", modes.NAMES)
def test_exits_and_doorbell_per_mode(raw: dict, name: str) -> None:
    mode = modes.get(name)
    runs = [t for t in raw["runs"] if t["mode"] == name]
    assert len(runs) == T
    for t in runs:
        userspace = name.startswith("userspace-")
        assert t["kvm_runs"] == t["exits"] == (N + 1 if userspace else 1)
        assert t["rings"] == (N if userspace else 0)
        assert t["io_exits"] == (N if userspace and mode.bus == "pio" else 0)
        assert t["mmio_exits"] == (N if userspace and mode.bus == "mmio" else 0)
        assert t["doorbell"] == (N if mode.uses_doorbell else 0)
        assert t["eventfd_left"] == 0
        assert t["end"] == "done" and t["ns"] > 0


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
        [sys.executable, "-m", "payload.bench.runner", "--iterations", str(N), "--trials", "1",
         "--modes", "iofd-pio,kernel-pio", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(out.read_text())
    assert raw["kernel"] == os.uname().release
    assert checks.raw_problems(raw) == []
    assert set(raw["modes"]) == {"iofd-pio", "kernel-pio"}
    assert [t["kvm_runs"] for t in raw["runs"] if t["mode"] == "iofd-pio"] == [1]
    assert [t["doorbell"] for t in raw["runs"] if t["mode"] == "iofd-pio"] == [N]
