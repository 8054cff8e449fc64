"""``python -m harness bench|test --host ssh://...``: the remote runs.

Exit status: 0 when every host succeeded, 1 when any host failed (its
column says why; the others' results are written all the same), 2 for a
usage error before anything ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness import flavours, junit, paths
from harness.bench import targets
from harness.errors import HarnessError
from harness.kernel.pipeline import last_built
from harness.progress import say
from harness.remote import jobs, table
from harness.remote.address import Address, load_config, resolve
from harness.settings import Settings

OUT = paths.RESULTS / "remote"


def addresses(urls: Sequence[str], ssh_config: Path | None) -> list[Address]:
    """Resolve every URL; two that would share a results directory are refused."""
    config = load_config(ssh_config)
    resolved = [resolve(u, config) for u in urls]
    labels = [t.label for t in resolved]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise HarnessError(f"--host names {dup[0]} more than once")
    return resolved


def local_doorbells(settings: Settings) -> dict[str, Path]:
    """kernel release -> doorbell.ko, for each kernel built here: a remote
    host running one of those releases can load it as is."""
    kos: dict[str, Path] = {}
    for name in flavours.FLAVOURS:
        try:
            k = last_built(settings.with_flavour(name))
        except HarnessError:
            continue
        if k.doorbell_ko.exists():
            kos[k.release] = k.doorbell_ko
    return kos


def _finish(outcomes: list[jobs.Outcome], out: Path) -> int:
    md, js = table.write(outcomes, out)
    print(table.markdown(outcomes))
    print(f"written: {md}, {js} and per host {out}/<host>/")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        say(f"{len(failed)} of {len(outcomes)} host(s) failed: "
            + "; ".join(o.error or "" for o in failed))
        return 1
    return 0


def bench(settings: Settings, urls: Sequence[str], ssh_config: Path | None, n: int, trials: int,
          strict: bool, out: Path = OUT) -> int:
    if n < 1 or trials < 1:
        raise HarnessError("--iterations and --trials must be at least 1")
    outcomes = jobs.bench(addresses(urls, ssh_config), out, local_doorbells(settings), n, trials)
    rc = _finish(outcomes, out)
    # A target the run could not decide (ok None, the limit inside its
    # median's confidence interval) is reported, not failed: the same rule as the local run's.
    missed = any(o.bench and targets.misses(o.bench["targets"]) for o in outcomes)
    return rc or (1 if strict and missed else 0)


def test(settings: Settings, urls: Sequence[str], ssh_config: Path | None, pytest_args: Sequence[str],
         out: Path = OUT) -> int:
    outcomes = jobs.test(addresses(urls, ssh_config), out, local_doorbells(settings), pytest_args)
    for o in outcomes:
        if o.ok and o.counts is not None and not junit.clean(o.counts):
            o.error = (f"{o.address.label}: guest tests not clean: {o.counts} "
                       f"(log: {out / o.address.label / jobs.PYTEST_LOG})")
    return _finish(outcomes, out)
