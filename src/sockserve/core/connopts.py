"""Socket options every accepted connection gets: set once on the listener where the kernel allows.

A TCP connection accepted on Linux starts as a copy of its listening socket,
so ``SO_RCVTIMEO``/``SO_SNDTIMEO`` (the idle timeout) and ``TCP_NODELAY`` set
on the listener arrive already set. Setting them once there instead of three
``setsockopt`` calls per connection was ~10% of the interpreter's time on the
accept path under connection churn (py-spy, GIL-holding samples).

Nothing is assumed: the listener is configured when the first connection
arrives (that one gets its options directly), and the next connection is
checked with ``getsockopt``; if it did not inherit (another kernel, a Unix
socket, a listener we may not change) the options are set on every
connection as before. A change of the server's settings, or of its listening
socket, reconfigures the listener and checks again.
"""

from __future__ import annotations

import socket
from typing import Any

from sockserve.core.timeouts import IdleTimeoutSocket, apply_idle_timeout, kernel_timeval

__all__ = ["ConnectionOptions"]

_TIMEVAL_SIZE = len(kernel_timeval(0.0))


class ConnectionOptions:
    """Applies the idle timeout and TCP_NODELAY to accepted connections as cheaply as possible."""

    def __init__(self) -> None:
        #: (listener, idle timeout, nodelay) the listener was configured for.
        self._configured: tuple[Any, float | None, bool] | None = None
        #: None: not checked yet; then whether accepted sockets inherit.
        self._inherited: bool | None = None
        self._timeval = b""
        #: What the kernel reports back for it (it rounds to its clock tick).
        self._expected_timeval = b""

    def apply(self, listener: Any, request: Any, idle_timeout: float | None, nodelay: bool) -> None:
        """Give ``request`` (just accepted on ``listener``) the server's connection options."""
        if (listener, idle_timeout, nodelay) != self._configured:
            # This connection was accepted before the listener had the options.
            self._configure(listener, idle_timeout, nodelay)
            self._set_each(request, idle_timeout, nodelay)
            return
        if self._inherited is None:
            self._inherited = self._has_options(request, nodelay)
        if not self._inherited:
            self._set_each(request, idle_timeout, nodelay)
        elif idle_timeout is not None:
            if type(request) is socket.socket and request.gettimeout() is None:
                request.__class__ = IdleTimeoutSocket
            else:
                apply_idle_timeout(request, idle_timeout)

    @staticmethod
    def _set_each(request: Any, idle_timeout: float | None, nodelay: bool) -> None:
        """The options, set on this connection itself."""
        if idle_timeout is not None:
            apply_idle_timeout(request, idle_timeout)
        if nodelay:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _configure(self, listener: Any, idle_timeout: float | None, nodelay: bool) -> None:
        self._configured = (listener, idle_timeout, nodelay)
        self._timeval = kernel_timeval(idle_timeout or 0.0)
        self._inherited = False
        try:
            if not isinstance(listener, socket.socket) or listener.family not in (
                socket.AF_INET,
                socket.AF_INET6,
            ):
                return  # Unix sockets do not pass options on to accepted ones
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._timeval)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._timeval)
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
            self._expected_timeval = listener.getsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL_SIZE
            )
        except (OSError, ValueError):
            return  # closed, or not ours to change: set them per connection
        self._inherited = None  # check on the next accepted connection

    def _has_options(self, request: Any, nodelay: bool) -> bool:
        """Whether ``request`` arrived with the options the listener was given."""
        if not hasattr(request, "getsockopt"):  # a socket, or an async handler's view of one
            return False
        try:
            expected = self._expected_timeval
            timeouts_ok = (
                request.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL_SIZE) == expected
                and request.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL_SIZE)
                == expected
            )
            nodelay_ok = bool(request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) == nodelay
        except OSError:
            return False
        return timeouts_ok and nodelay_ok
