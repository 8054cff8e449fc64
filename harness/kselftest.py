"""Upstream KVM selftests: run them with the kselftest runner and judge them.

The runner's TAP lines say, per test, "ok", "ok ... # SKIP" or "not ok";
the result is compared with a baseline recorded on the unpatched base in
the same nested environment, so the patch is only blamed for tests that
passed there and no longer do.
"""

import re
from pathlib import Path

BASELINE = Path(__file__).resolve().parent.parent / "tests" / "vm" / "kvm-selftests-baseline.txt"
_RESULT = re.compile(r"^(?P<not>not )?ok \d+ selftests: kvm: (?P<name>\S+)(?: # (?P<why>.*))?$")


def command(installed: str, test: str | None = None) -> str:
    """The shell command running every KVM selftest installed in *installed*,
    or only *test*, with the kselftest runner (TAP on stdout)."""
    which = f"-t kvm:{test}" if test else "-c kvm"
    return f"cd {installed} && ./run_kselftest.sh {which}"


def parse(tap: str) -> dict[str, str]:
    """Test name -> "pass", "skip" or "fail" (timeouts and crashes are failures)."""
    results = {}
    for line in tap.splitlines():
        m = _RESULT.match(line.strip())
        if not m:
            continue
        if m.group("not"):
            results[m.group("name")] = "fail"
        elif (m.group("why") or "").startswith("SKIP"):
            results[m.group("name")] = "skip"
        else:
            results[m.group("name")] = "pass"
    return results


def counts(results: dict[str, str]) -> dict[str, int]:
    return {k: sum(v == k for v in results.values()) for k in ("pass", "fail", "skip")}


def regressions(baseline: dict[str, str], results: dict[str, str]) -> list[str]:
    """Tests that passed on the base and did not pass (or did not run) now."""
    return sorted(name for name, status in baseline.items()
                  if status == "pass" and results.get(name) != "pass")


def dump(results: dict[str, str]) -> str:
    return "".join(f"{name} {status}\n" for name, status in sorted(results.items()))


def load(path: Path = BASELINE) -> dict[str, str]:
    lines = [line.split() for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {name: status for name, status in lines}
