"""User-facing errors.

Every error a user can cause is raised as a :class:`UserError` whose message is one line that
says what was wrong and how to fix it. The CLI prints ``neurofuzz: error: <message>`` and exits
with status 2; it never shows a traceback for a ``UserError``.
"""


class UserError(ValueError):
    """A problem with the user's input (file, option, data). The message says how to fix it."""


def one_line(e: BaseException, limit: int = 300) -> str:
    """``e``'s message as one line of at most ``limit`` characters, to quote in a UserError."""
    return " ".join(str(e).split())[:limit]
