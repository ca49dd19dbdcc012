"""Exceptions of sockserve, split by whose mistake they report.

A :class:`PeerError` is raised because of what a client sent (a line that is
too long, later a malformed PROXY header): the server logs it as one warning
line, closes that connection and goes on; it is never a bug in the program.
Mistakes of the program itself (a bad option value, a call in the wrong
state) raise ``ValueError``, ``TypeError`` or ``RuntimeError`` as usual.
"""

from __future__ import annotations

__all__ = ["LineTooLong", "PeerError"]


class PeerError(Exception):
    """The peer broke the protocol or a limit; only its connection is affected."""


class LineTooLong(PeerError, ValueError):
    """A line read with ``readline()`` exceeded ``max_line`` bytes.

    Also a ``ValueError``, so handlers that already catch ``ValueError`` for bad
    input keep working.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"line longer than {limit} bytes")
        self.limit = limit
