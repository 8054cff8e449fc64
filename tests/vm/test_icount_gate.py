"""The instruction-count regression gate (:mod:`harness.bench.gate`).

Its own boot of the kernel under icount (the shared VM runs without it),
every benchmark mode measured as its record was, and a failure for any mode
that costs more than 0.5 % over the record.  Skipped, with the reason,
where the figures cannot be compared: under KVM (no icount), or when the
kernel's base or flavour, its compiler, QEMU or the guest CPU differ from the
record's; ``make bench-record WHY=...`` records them again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.bench import gate, host
from harness.kernel.pipeline import Kernel
from harness.settings import Settings
from harness.vm import boot


def test_no_mode_costs_more_instructions_than_its_record(
        kernel: Kernel, settings: Settings, tmp_path: Path, summary: Callable[[str], None]) -> None:
    record = gate.load()
    if record is None:
        pytest.fail(f"no instruction-count record at {gate.RECORD}: make bench-record WHY=...")
    opts = boot.options(settings)
    if opts.accel.accel != "tcg":
        pytest.skip(f"the VM runs under {opts.accel.accel}: icount counts only under TCG")
    env, measured = host.count_modes(kernel, opts, tmp_path, settings.flavour.name,
                                     record["iterations"], record["trials"])
    verdict = gate.compare(record, env, measured)
    if verdict.incomparable:
        pytest.skip("instruction counts not comparable with the record: "
                    + "; ".join(verdict.incomparable) + " (make bench-record WHY=... records them)")
    summary(f"instruction-count gate: {verdict.compared} modes against the record of "
            f"{record['recorded']} (series {record['environment']['series']}, this run "
            f"{env['series']}); largest change {verdict.largest:.3%}; "
            f"{len(verdict.better)} cheaper by more than "
            f"{gate.TOLERANCE:.1%}" + "".join(f"\n  cheaper: {b}" for b in verdict.better))
    assert not verdict.worse, (f"{len(verdict.worse)} mode(s) cost more than "
                               f"{gate.TOLERANCE:.1%} over the record:\n  "
                               + "\n  ".join(verdict.worse))
