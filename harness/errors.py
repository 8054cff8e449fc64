"""The one exception type the CLI turns into a one-line message.

Anything the user can fix (a missing package, a dirty tree, a patch that
does not apply) is raised as :class:`HarnessError` with what is wrong and
what to do; the CLI prints it without a traceback.
"""


class HarnessError(Exception):
    """An error the user can act on: ``str()`` says what and how."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        self.what = what
        self.hint = hint
        super().__init__(f"{what}: {hint}" if hint else what)
