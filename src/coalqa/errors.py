"""The project's user-facing error type.

Raise :class:`CoalqaError` (or a subclass) for bad input a user can fix: a missing file, a
malformed row, an incompatible adapter. The CLI prints its message in red and exits with
status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""


class CoalqaError(Exception):
    """Bad input or settings; the message says which file/row/setting and what was expected."""
