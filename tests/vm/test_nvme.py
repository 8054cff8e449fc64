"""QEMU's NVMe device on KVM_IOFD in the test VM: the short check of make test.

An unmodified Linux L2 guest writes and verifies a RAM image through the
patched QEMU's NVMe controller with ``x-dbbuf=off,x-iofd=on`` (P1), and
again without the iofd (P0, the control).  P1 must finish with no verify
error and no userspace MMIO exit during the job: every doorbell write was
taken by KVM_IOFD.  P0 must show the exits P1 removed, about two per I/O
(an SQ tail and a CQ head write), which proves the count can see them.

It boots a VM of its own, as ``make nvme`` does (:func:`harness.nvme.host.l1`:
under TCG the host nudges it, see :mod:`harness.vm.nudge`), rather than
the suite's shared one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.kernel.pipeline import Kernel
from harness.nvme import host, inputs
from harness.settings import Settings
from harness.vm import boot


@pytest.fixture(scope="module")
def built(settings: Settings) -> inputs.Inputs:
    try:
        return inputs.last_built(settings)
    except HarnessError as e:
        pytest.fail(f"{e} ({e.hint})")


def _mmio_userspace(job: dict) -> int:
    return job["counts"]["userspace_by_reason"].get("KVM_EXIT_MMIO", 0)


def test_nvme_doorbells_take_no_userspace_exit_and_lose_nothing(
        settings: Settings, kernel: Kernel, built: inputs.Inputs,
        summary: Callable[[str], None]) -> None:
    out = paths.RESULTS / "test-nvme"
    out.mkdir(parents=True, exist_ok=True)
    with host.l1(boot.options(settings), kernel) as vm:
        raw = host.run_runner(vm, built, "--mode verify --configs P1,P0 --qd 1 --size 4M",
                              "raw-nvme-check.json", out, 2)
    by = {j["config"]: j for j in raw["jobs"]}
    assert set(by) == {"P1", "P0"}
    for name, j in by.items():
        assert j["rc"] == 0 and j["fio"]["errors"] == 0, f"{name}: fio failed or did not verify"
        assert j["fio"]["ios"] >= 2048, f"{name}: fio did {j['fio']['ios']} I/Os"
    p1, p0 = by["P1"], by["P0"]
    p1_mmio = _mmio_userspace(p1) / p1["fio"]["ios"]
    p0_mmio = _mmio_userspace(p0) / p0["fio"]["ios"]
    summary(f"nvme: P1 {p1['fio']['ios']} I/Os verified, {p1_mmio:.3f} userspace MMIO exits "
            f"per I/O; P0 {p0_mmio:.2f}")
    assert p0_mmio >= 1.8, f"the control P0 took only {p0_mmio:.2f} MMIO exits per I/O"
    assert _mmio_userspace(p1) == 0, (
        f"P1 took {_mmio_userspace(p1)} userspace MMIO exits: "
        f"{p1['counts']['userspace_by_reason']}")
