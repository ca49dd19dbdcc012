"""Exceptions of sockserve, split by whose mistake they report.

A :class:`PeerError` is raised because of what a client sent (a line that is
too long, a malformed PROXY header): the server logs it as one warning
line, closes that connection and goes on; it is never a bug in the program.
Mistakes of the program itself (a bad option value, a call in the wrong
state) raise ``ValueError``, ``TypeError`` or ``RuntimeError`` as usual.
"""

from __future__ import annotations

__all__ = ["LineTooLong", "PeerError", "ProxyHeaderError"]


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


class ProxyHeaderError(PeerError):
    """A PROXY protocol header that is malformed, too long, truncated or not there at all.

    Raised by :func:`sockserve.protocols.proxy.parse_proxy_header`; the message
    says what is wrong (and quotes at most a few bytes of what was received), so
    one log line is enough to see whether a proxy is misconfigured or a client
    bypassed it. The connection must be closed: the specification forbids
    guessing where the application data starts after a bad header.
    """
