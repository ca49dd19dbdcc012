"""What to do when ``accept()`` (or a datagram server's ``recvfrom()``) fails.

The stdlib swallows every ``OSError`` from ``get_request`` and goes straight
back to ``select``. When the process is out of file descriptors the listening
socket stays readable, so that is a busy loop that burns a core and logs
nothing. Here each failure falls in one of three named classes:

``TRANSIENT_ERRNOS``
    The failure belongs to one connection that is already gone, or to nobody:
    the peer reset before we accepted it, a network interface went down under
    it, another process or thread won the race for it. Linux's accept(2) says
    to treat errors of the new socket as if accept had been retried. They are
    ignored (logged at DEBUG): the next connection is unaffected.

``RESOURCE_ERRNOS``
    The process or the kernel is out of something (descriptors, buffer
    memory). Retrying at once fails again, so the listener rests for a delay
    that doubles on each consecutive failure up to a ceiling and resets on
    the first success. Logged at WARNING, rate-limited.

anything else
    Not expected from a healthy listening socket (EBADF, EINVAL, ENOTSOCK: it
    was closed or never listened). We cannot fix it, and raising would take
    down a server that might recover (a socket replaced by a subclass), so it
    is logged at ERROR, rate-limited, and the listener rests at the longest
    delay: a misbehaving listener costs a line every few seconds, not a core.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from enum import Enum

from sockserve.observability.logs import RateLimitedLog, server_logger

__all__ = [
    "RESOURCE_ERRNOS",
    "TRANSIENT_ERRNOS",
    "AcceptErrorKind",
    "AcceptThrottle",
    "classify_accept_error",
]


def _errnos(*names: str) -> frozenset[int]:
    """Errno values by name, skipping the ones this platform does not define."""
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))


TRANSIENT_ERRNOS = _errnos(
    "EAGAIN",  # another worker accepted it first (shared listener, prefork)
    "EWOULDBLOCK",
    "EINTR",  # a signal arrived; PEP 475 retries most calls, not all wrappers
    "ECONNABORTED",  # the client reset between SYN and accept
    "EPROTO",  # protocol error on the new connection (Linux reports it here)
    "EPERM",  # a firewall rule refused the new connection (Linux)
    "ENETDOWN",  # the rest are network errors of the new socket, which
    "ENOPROTOOPT",  # Linux passes through accept(2): "treat as EAGAIN"
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
    "ETIMEDOUT",
    "ECONNREFUSED",  # datagram servers: an ICMP error for an earlier reply
    "ECONNRESET",
)

RESOURCE_ERRNOS = _errnos(
    "EMFILE",  # this process is out of file descriptors
    "ENFILE",  # the whole system is out of file descriptors
    "ENOBUFS",  # out of socket buffer memory
    "ENOMEM",  # out of kernel memory
)


class AcceptErrorKind(Enum):
    """The three ways a failed accept is handled (see the module docstring)."""

    TRANSIENT = "transient"
    RESOURCE = "resource"
    UNEXPECTED = "unexpected"


def classify_accept_error(exc: OSError) -> AcceptErrorKind:
    """Sort an ``OSError`` raised by ``get_request()`` into its class."""
    if isinstance(exc, TimeoutError) or exc.errno in TRANSIENT_ERRNOS:
        # A timeout can only come from a listener with a timeout set by a
        # subclass: there was simply nothing to accept.
        return AcceptErrorKind.TRANSIENT
    if exc.errno in RESOURCE_ERRNOS:
        return AcceptErrorKind.RESOURCE
    return AcceptErrorKind.UNEXPECTED


class AcceptThrottle:
    """Turns accept failures into log lines and a pause for the listener.

    ``failed()`` returns how long the listener should rest (0 for transient
    errors); ``succeeded()`` resets the back-off. The serving loop stops
    watching the listener until the pause is over, so a resource shortage
    costs a few wake-ups per second instead of a spinning core.
    """

    def __init__(
        self,
        *,
        initial_delay: float = 0.01,
        max_delay: float = 1.0,
        log_interval: float = 10.0,
        logger: logging.Logger = server_logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < initial_delay <= max_delay:
            raise ValueError(
                f"need 0 < initial_delay <= max_delay, got {initial_delay!r} and {max_delay!r}"
            )
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self._delay = 0.0
        self._logger = logger
        self._log = RateLimitedLog(logger, log_interval, clock=clock)
        #: Failures seen, by class; cheap counters for stats and tests.
        self.counts: dict[AcceptErrorKind, int] = dict.fromkeys(AcceptErrorKind, 0)

    def failed(self, exc: OSError, listener: str) -> float:
        """Record a failure of the listener described by ``listener``; return the pause."""
        kind = classify_accept_error(exc)
        self.counts[kind] += 1
        if kind is AcceptErrorKind.TRANSIENT:
            self._logger.debug("accept on %s: %s (ignored)", listener, exc)
            return 0.0
        if kind is AcceptErrorKind.RESOURCE:
            self._delay = min(self.max_delay, max(self.initial_delay, self._delay * 2))
            self._log.log(
                logging.WARNING,
                ("resource", exc.errno),
                "accept on %s failed: %s; pausing new connections for %.3f s",
                listener,
                exc,
                self._delay,
            )
            return self._delay
        self._delay = self.max_delay
        self._log.log(
            logging.ERROR,
            ("unexpected", exc.errno),
            "accept on %s failed unexpectedly: %r; retrying in %.3f s",
            listener,
            exc,
            self._delay,
        )
        return self._delay

    def succeeded(self) -> None:
        """A connection was accepted: the shortage, if any, is over."""
        self._delay = 0.0
