"""The error type both sides turn into a one-line message.

The payload runs where the host's package is not installed, yet a check
it makes (a trial's counts, say) is also made on the host and must read
there like any other error the user can act on.  So the base class lives
here, and the host's :class:`harness.errors.HarnessError` derives from it.
"""


class ActionableError(Exception):
    """An error the user can act on: ``str()`` says what and how."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        self.what = what
        self.hint = hint
        super().__init__(f"{what}: {hint}" if hint else what)
