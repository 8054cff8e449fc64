"""Recognising kernel splats in a log.

A splat anywhere in the guest's kernel log fails the step that caused it.
Each pattern matches the first line the kernel prints for that kind of
report; the report is shown from there on.
"""

import os
import re

PATTERNS: dict[str, str] = {
    "BUG": r"\bBUG: ",
    "WARNING": r"\bWARNING: .*(CPU: \d+ PID|at )",
    "Oops": r"\bOops: ",
    "general protection fault": r"general protection fault",
    "KASAN": r"\bKASAN: ",
    "UBSAN": r"\bUBSAN: ",
    "lockdep": r"(possible (circular|recursive) locking|inconsistent lock state|"
               r"possible irq lock inversion|lock held when returning|bad unlock balance)",
    "RCU": r"(suspicious RCU usage|rcu: INFO: rcu_\w+ (self-)?detected|rcu_\w+ detected stalls)",
    "sleep in atomic": r"(scheduling while atomic|sleeping function called from invalid context)",
    "panic": r"Kernel panic - not syncing",
    "kmemleak": r"kmemleak: \d+ new suspected memory leaks",
    "hung task": r"INFO: task .* blocked for more than",
    "soft lockup": r"(soft|hard) lockup",
}
_ANY = re.compile("|".join(f"(?P<p{i}>{p})" for i, p in enumerate(PATTERNS.values())))
_KINDS = list(PATTERNS)
CONTEXT_LINES = 40


def find(log: str) -> list[tuple[str, str]]:
    """Every splat in *log* as (kind, the report's first lines)."""
    lines = log.splitlines()
    found = []
    i = 0
    while i < len(lines):
        m = _ANY.search(lines[i])
        if not m:
            i += 1
            continue
        kind = _KINDS[int(next(k for k, v in m.groupdict().items() if v)[1:])]
        found.append((kind, "\n".join(lines[i:i + CONTEXT_LINES])))
        i += CONTEXT_LINES
    return found


def describe(splats: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"--- {kind} ---\n{text}" for kind, text in splats)


class KmsgWatch:
    """Splats logged while a block runs, read from /dev/kmsg (inside the guest).

    Opened at the end of the log, so only records written during the block
    count; records overwritten meanwhile (EPIPE) are skipped, not fatal.
    """

    def __enter__(self) -> "KmsgWatch":
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)
        self.lines: list[str] = []
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while True:
                try:
                    record = os.read(self._fd, 8192).decode(errors="replace")
                except BlockingIOError:
                    break
                except BrokenPipeError:
                    continue
                # "prio,seq,time,flags;text": keep the text.
                self.lines.append(record.split(";", 1)[-1].rstrip("\n"))
        finally:
            os.close(self._fd)

    def splats(self) -> list[tuple[str, str]]:
        return find("\n".join(self.lines))
