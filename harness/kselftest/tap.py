"""What the kselftest runner's TAP output says: each test's result, how long
it ran, which one was cut short, and what a failing one printed.

The runner prints ``# selftests: kvm: NAME`` when a test starts, the test's
own output prefixed with ``# ``, and then ``ok``, ``ok ... # SKIP`` or
``not ok``.  The harness prefixes every line with the guest's clock
(:data:`STAMPER`), which gives each test's duration.
"""

from __future__ import annotations

import re

_STAMP = r"(?:(?P<t>\d+) )?"
_RESULT = re.compile(_STAMP + r"(?P<not>not )?ok \d+ selftests: kvm: (?P<name>\S+)(?: # (?P<why>.*))?$")
_START = re.compile(_STAMP + r"# selftests: kvm: (?P<name>\S+)$")
# Prefix each line with the guest's epoch seconds (bash's printf, no fork per line).
STAMPER = "while IFS= read -r l; do printf '%(%s)T %s\\n' -1 \"$l\"; done"


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


def durations(tap: str) -> dict[str, int]:
    """Test name -> seconds it ran, from stamped TAP; a test still running
    when the output ends is left out (see :func:`unfinished`)."""
    started: dict[str, int] = {}
    took = {}
    for line in tap.splitlines():
        line = line.strip()
        if (m := _START.match(line)) and m.group("t"):
            started[m.group("name")] = int(m.group("t"))
        elif (m := _RESULT.match(line)) and m.group("t") and m.group("name") in started:
            took[m.group("name")] = int(m.group("t")) - started[m.group("name")]
    return took


def unfinished(tap: str) -> str | None:
    """The test that had started and not reported when the output ends."""
    current = None
    for line in tap.splitlines():
        line = line.strip()
        if m := _START.match(line):
            current = m.group("name")
        elif (m := _RESULT.match(line)) and m.group("name") == current:
            current = None
    return current


def output(tap: str, name: str) -> str:
    """What *name* printed, every time it ran in *tap* (its start and result
    lines included): where a failure's assertion is to be found."""
    lines, inside = [], False
    for line in tap.splitlines():
        stripped = line.strip()
        if m := _START.match(stripped):
            inside = m.group("name") == name
        ends = (m := _RESULT.match(stripped)) is not None and m.group("name") == name
        if inside or ends:
            lines.append(line)
        inside = inside and not ends
    return "\n".join(lines)


def slowest(took: dict[str, int], n: int = 8) -> str:
    top = sorted(took.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {s} s" for name, s in top)


def counts(results: dict[str, str]) -> dict[str, int]:
    return {k: sum(v == k for v in results.values()) for k in ("pass", "fail", "skip")}
