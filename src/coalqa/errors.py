"""The project's user-facing error type.

Raise :class:`CoalqaError` (or a subclass) for bad input a user can fix: a missing file, a
malformed row, an incompatible adapter. The CLI prints its message in red and exits with
status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""


class CoalqaError(Exception):
    """Bad input or settings; the message says which file/row/setting and what was expected."""


class StopRequested(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so a termination takes the same clean-up paths as Ctrl-C (partial work
    saved, checkpoint written, exit 130). Unlike a Ctrl-C, it also ends interactive chat instead of only the answer."""
