"""Phase banners, elapsed time and a progress line for long steps.

Every long step runs inside :func:`phase`, which prints its name when it
starts and its duration when it ends, so a user watching a 12-minute build
always knows where the harness is.
"""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_start = time.monotonic()


def _clock() -> str:
    s = int(time.monotonic() - _start)
    return f"{s // 60:02d}:{s % 60:02d}"


def say(msg: str) -> None:
    print(f"[{_clock()}] {msg}", file=sys.stderr, flush=True)


@contextmanager
def phase(name: str) -> Iterator[None]:
    say(f"{name} ...")
    t0 = time.monotonic()
    yield
    say(f"{name}: done in {time.monotonic() - t0:.1f} s")


class Meter:
    """One self-overwriting status line (on a terminal) or a line every 30 s."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < (1.0 if self.tty else 30.0):
            return
        self.last = now
        el = int(now - self.t0)
        if self.total:
            pct = min(99, 100 * done // self.total)
            bar = "#" * (pct // 5) + "." * (20 - pct // 5)
            text = f"{self.label} [{bar}] {pct:2d}% ({done}/~{self.total}) {el // 60}:{el % 60:02d}"
        else:
            text = f"{self.label} {done} steps {el // 60}:{el % 60:02d}"
        if self.tty:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
        else:
            say(text)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)
