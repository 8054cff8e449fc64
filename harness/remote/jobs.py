"""Per-host jobs (bench, test) and running them on several hosts at once.

Each host gets its own thread, connection and output directory
(``results/remote/<label>/``); a host that fails, at any step, becomes an
:class:`Outcome` with its error, and the other hosts carry on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import machine
from harness.bench import report
from harness.bench.measure import RAW, measure
from harness.progress import say
from harness.remote import setup
from harness.remote.address import Address
from harness.remote.connection import Remote, RemoteError
from harness.remote.host import Host
from payload.errors import ActionableError
from payload.vmexit.modes import runner_timeout

JUNIT = "junit-payload.xml"
PYTEST_LOG = "pytest.log"
TEST_TIMEOUT = 3600.0


@dataclass
class Outcome:
    """What one host produced: a bench record, test counts, or an error."""

    address: Address
    info: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] | None = None
    counts: dict[str, int] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def host_env(address: Address, info: dict[str, Any]) -> dict[str, Any]:
    """The environment keys of a remote bench record: it is tagged with the
    host's CPU and kernel, and there is no emulator between it and KVM."""
    return {
        "series": f"as built into the host's kernel {info.get('kernel', 'unknown')}",
        "accel": "none: KVM runs on the remote host itself",
        "accel_reason": f"remote address {address.url}",
        "host_cpu": info.get("cpu", "unknown"),
        "qemu": "none",
        "remote": {"url": address.url, "label": address.label, **info},
    }


def _bench(host: Host, out: Path, n: int, trials: int) -> dict[str, Any]:
    say(f"{host.label}: measuring on {host.info['hostname']} ({host.info['cpu']}, "
        f"kernel {host.info['kernel']})")
    # Starting python alone can take a minute on a debug kernel under TCG.
    raw = measure(host, n, trials, out / RAW, max(runner_timeout(n, trials), setup.STEP_TIMEOUT))
    return report.render(raw, host_env(host.remote.address, host.info), out)


def _test(host: Host, out: Path, pytest_args: Sequence[str]) -> dict[str, int]:
    if not host.doorbell_ko:
        raise RemoteError(f"{host.label}: no doorbell.ko path on the host for the tests to "
                          "reload", "install the module there (modinfo -n doorbell must find it)")
    say(f"{host.label}: running the guest tests on {host.info['hostname']}")
    return machine.run_pytest(host, pytest_args or ["tests/payload"], host.doorbell_ko,
                              out / JUNIT, out / PYTEST_LOG, TEST_TIMEOUT).counts


def _one(address: Address, out_root: Path, local_kos: dict[str, Path], with_pytest: bool,
         job: Callable[[Host, Path, Outcome], None]) -> Outcome:
    outcome = Outcome(address)
    out = out_root / address.label
    out.mkdir(parents=True, exist_ok=True)
    for old in (RAW, JUNIT, PYTEST_LOG, *report.OUTPUTS):
        (out / old).unlink(missing_ok=True)
    try:
        with Remote(address) as remote:
            say(f"{address.label}: connected to {address.hostname}:{address.port} as {address.user}")
            host = setup.open_host(remote, local_kos, with_pytest)
            outcome.info = host.info
            try:
                job(host, out, outcome)
            finally:
                _cleanup(host)
    except ActionableError as e:  # a HarnessError, or a CountMismatch from the payload's checks
        outcome.error = str(e) if str(e).startswith(f"{address.label}:") else f"{address.label}: {e}"
    except Exception as e:  # a bug here must not lose the other hosts' results
        (out / "error.log").write_text(traceback.format_exc())
        outcome.error = f"{address.label}: {type(e).__name__}: {e} (traceback in {out}/error.log)"
    say(f"{address.label}: " + ("done" if outcome.ok else f"FAILED: {outcome.error}"))
    return outcome


def _cleanup(host: Host) -> None:
    """Best effort: a host that dropped keeps its /tmp/kvm-iofd.* directory."""
    if not host.remote.alive():
        say(f"{host.label}: left {host.workdir} behind (the connection is gone)")
        return
    try:
        setup.close_host(host)
    except RemoteError as e:
        say(f"{host.label}: cleaning up failed: {e}")


def _parallel(addresses: Sequence[Address], fn: Callable[[Address], Outcome]) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=max(1, len(addresses))) as pool:
        return list(pool.map(fn, addresses))


def bench(addresses: Sequence[Address], out_root: Path, local_kos: dict[str, Path], n: int,
          trials: int) -> list[Outcome]:
    def job(host: Host, out: Path, outcome: Outcome) -> None:
        outcome.bench = _bench(host, out, n, trials)

    return _parallel(addresses, lambda t: _one(t, out_root, local_kos, False, job))


def test(addresses: Sequence[Address], out_root: Path, local_kos: dict[str, Path],
         pytest_args: Sequence[str]) -> list[Outcome]:
    def job(host: Host, out: Path, outcome: Outcome) -> None:
        outcome.counts = _test(host, out, pytest_args)

    return _parallel(addresses, lambda t: _one(t, out_root, local_kos, True, job))
