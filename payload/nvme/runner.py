"""The NVMe table's measurement: ``python -m payload.nvme.runner ...``.

Runs as root in the test VM (L1), where the patched KVM is: for each round
and each configuration (in the round's order from
:func:`payload.stats.run_order`, as ``make bench`` interleaves its modes),
one L2 boot per queue depth, each running one fio job.  (Several jobs in
one L2 boot sometimes left L1 idle for good at a job's start under TCG's
nested SVM; one job per boot never did, and costs about 10 s a boot.)
It writes one JSON object and makes no verdict; the host's
``harness.nvme.report`` judges it.

Output (schema 1)::

  schema      1
  mode        "read" (randread on null-co) or "verify" (write and verify a RAM image)
  kernel      L1's release
  counted     true when L1 runs under icount (its clock counts instructions)
  ios         fio's I/Os per job
  order       [[config, ...] per round]
  jobs        [JOB, ...] in run order

  JOB         {"config", "round", "qd", "rc" (fio's exit status), "ns" (L1's
               clock across the job), "counts" (payload.nvme.counters),
               "fio": {"ios", "iops", "clat_ns": {"p50", "p99"}, "errors"}}
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from payload.nvme import configs, counters, l2
from payload.stats import run_order


def fio_summary(fio: dict[str, Any] | None) -> dict[str, Any]:
    """What the table needs from fio's JSON (one job), or an empty summary."""
    if not fio or not fio.get("jobs"):
        return {"ios": 0, "iops": 0.0, "clat_ns": {}, "errors": None}
    job = fio["jobs"][0]
    ios = sum(int(job.get(d, {}).get("total_ios", 0)) for d in ("read", "write"))
    iops = sum(float(job.get(d, {}).get("iops", 0.0)) for d in ("read", "write"))
    side = job["read"] if job.get("read", {}).get("total_ios") else job.get("write", {})
    pct = side.get("clat_ns", {}).get("percentile", {})
    return {"ios": ios, "iops": iops,
            "clat_ns": {"p50": pct.get("50.000000"), "p99": pct.get("99.000000")},
            "errors": int(job.get("error", 0))}


def _one_boot(a: argparse.Namespace, c: configs.Config, qemu: dict[str, Path], disk: str,
              qd: int, log: Path, r: int) -> list[dict[str, Any]] | None:
    """Boot L2 once for configuration ``c`` at queue depth ``qd``: its job
    records, or None after saying why on stderr."""
    boot = l2.Boot(qemu[c.qemu], a.kernel, a.initrd, disk)
    print(f"round {r + 1}/{a.rounds}: {c.name} at QD {qd}", file=sys.stderr)
    # l2.run keeps to a.timeout; if a call it makes ever blocks past that,
    # say where and stop rather than hang the VM.
    faulthandler.dump_traceback_later(a.timeout + 60, exit=True)
    try:
        jobs = l2.run(boot, c, a.mode, [qd], a.ios, a.size,
                      counters.Window, log, a.timeout)
    except (l2.L2Error, counters.CounterError) as e:
        print(f"{c.name} at QD {qd}, round {r + 1}: {e}", file=sys.stderr)
        return None
    finally:
        faulthandler.cancel_dump_traceback_later()
    return [{"config": c.name, "round": r, "qd": j.qd, "rc": j.rc, "ns": j.ns,
             "counts": j.counts, "fio": fio_summary(j.fio)} for j in jobs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qemu-debian", type=Path, required=True)
    p.add_argument("--qemu-patched", type=Path, required=True)
    p.add_argument("--kernel", type=Path, required=True)
    p.add_argument("--initrd", type=Path, required=True)
    p.add_argument("--configs", default=",".join(c.name for c in configs.CONFIGS))
    p.add_argument("--qd", default=",".join(map(str, configs.QDS)))
    p.add_argument("--ios", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--mode", choices=("read", "verify"), default="read")
    p.add_argument("--size", default="16M", help="the verify job's region")
    p.add_argument("--counted", action="store_true", help="L1 runs under icount (recorded)")
    p.add_argument("--timeout", type=float, default=900.0, help="limit per L2 boot, seconds")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--logs", type=Path, help="where each L2 boot's console goes "
                   "(default: nvme-console/ beside --out)")
    a = p.parse_args(argv)
    try:
        chosen = configs.lookup(a.configs)
        qds = [int(q) for q in a.qd.split(",")]
    except ValueError as e:
        p.error(str(e))
    if a.ios < 1 or a.rounds < 1 or any(q < 1 for q in qds):
        p.error("--ios, --rounds and every --qd must be at least 1")
    for f in (a.qemu_debian, a.qemu_patched, a.kernel, a.initrd):
        if not f.exists():
            print(f"{f}: not found", file=sys.stderr)
            return 2
    qemu = {"debian": a.qemu_debian, "patched": a.qemu_patched}
    logs = a.logs or a.out.parent / "nvme-console"
    logs.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in chosen]
    out: dict[str, Any] = {"schema": 1, "mode": a.mode, "kernel": os.uname().release,
                           "counted": a.counted, "ios": a.ios, "order": [], "jobs": []}
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        disk = "null"
        if a.mode == "verify":
            disk = str(Path(shm) / "nvme.img")
            with open(disk, "wb") as f:
                f.truncate(64 << 20)
        for r in range(a.rounds):
            order = run_order(names, r)
            out["order"].append(order)
            for name in order:
                for qd in qds:
                    jobs = _one_boot(a, configs.BY_NAME[name], qemu, disk, qd,
                                     logs / f"{name}-qd{qd}-r{r}.log", r)
                    if jobs is None:
                        return 1
                    out["jobs"].extend(jobs)
    a.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
