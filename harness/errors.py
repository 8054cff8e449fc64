"""The one exception type the CLI turns into a one-line message.

Anything the user can fix (a missing package, a dirty tree, a patch that
does not apply) is raised as :class:`HarnessError` with what is wrong and
what to do; the CLI prints it, or any other
:class:`payload.errors.ActionableError`, without a traceback.
"""

from payload.errors import ActionableError


class HarnessError(ActionableError):
    """An error on the host side the user can act on."""
