"""The error type both sides turn into a one-line message.

The payload runs where the host's package is not installed, yet a check
it makes (a trial's counts, say) is also made on the host and must read
there like any other error the user can act on.  So the base class lives
here, and the host's :class:`harness.errors.HarnessError` derives from it.

A runner's "this machine cannot run it" is said the same way by both
runners (:func:`cannot_run`), so the host reads one exit status for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

CANNOT_RUN = 2
"""A runner's exit status when this machine cannot run it (no patched KVM,
no doorbell module, a name it does not know): the host tells that from a
run that failed."""


def cannot_run(check: Callable[[], str | None]) -> int | None:
    """Before a runner measures: ``check`` names what is in the way on this
    machine, or None; a ValueError (an unknown name) or OSError it raises is
    such a reason too.  Print ``error: WHY`` and return :data:`CANNOT_RUN`,
    or None to go on."""
    try:
        why = check()
    except (ValueError, OSError) as e:
        why = str(e)
    if not why:
        return None
    print(f"error: {why}", file=sys.stderr)
    return CANNOT_RUN


class ActionableError(Exception):
    """An error the user can act on: ``str()`` says what and how."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        self.what = what
        self.hint = hint
        super().__init__(f"{what}: {hint}" if hint else what)
