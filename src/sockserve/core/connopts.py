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

TCP keepalive (``SO_KEEPALIVE`` with ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``,
``TCP_KEEPCNT``) and ``TCP_USER_TIMEOUT`` travel the same way (Linux copies
them to accepted sockets too): :func:`tcp_settings` turns the server's
options into the ``setsockopt`` calls, none when none is set, so the
defaults cost no system call at all.
"""

from __future__ import annotations

import math
import socket
from typing import Any

from sockserve.core.timeouts import IdleTimeoutSocket, apply_idle_timeout, kernel_timeval

__all__ = ["ConnectionOptions", "TcpSetting", "tcp_settings"]

_TIMEVAL_SIZE = len(kernel_timeval(0.0))

#: One ``setsockopt(level, name, value)`` call.
TcpSetting = tuple[int, int, int]
#: What turns each setting off again when a server's options change (the
#: keepalive intervals need no reset: without SO_KEEPALIVE they do nothing).
_OFF = {
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE): 0,
    (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", -1)): 0,
}


def tcp_settings(
    keepalive: bool | float | None,
    interval: float | None,
    count: int | None,
    user_timeout: float | None,
) -> tuple[TcpSetting, ...]:
    """The ``setsockopt`` calls for the keepalive and user-timeout options (empty: none set).

    ``keepalive`` is False/None (off), True (on, with the kernel's idle
    time, two hours by default) or the seconds of silence before the first
    probe. The kernel counts keepalive times in whole seconds (rounded up
    here) and the user timeout in milliseconds. Options the platform lacks
    are skipped: they tune, they are not needed to serve.
    """
    calls: list[TcpSetting] = []
    if keepalive:
        calls.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
        if keepalive is not True and hasattr(socket, "TCP_KEEPIDLE"):
            calls.append((socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _whole(keepalive)))
        if interval is not None and hasattr(socket, "TCP_KEEPINTVL"):
            calls.append((socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _whole(interval)))
        if count is not None and hasattr(socket, "TCP_KEEPCNT"):
            calls.append((socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count))
    if user_timeout is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
        milliseconds = max(1, math.ceil(user_timeout * 1000))
        calls.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds))
    return tuple(calls)


def _whole(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class ConnectionOptions:
    """Applies the idle timeout, TCP_NODELAY and ``tcp_settings`` to accepted connections.

    As cheaply as possible: once on the listener, where connections inherit them.
    """

    def __init__(self) -> None:
        #: (listener, idle timeout, nodelay, TCP settings) the listener was configured for.
        self._configured: tuple[Any, float | None, bool, tuple[TcpSetting, ...]] | None = None
        #: None: not checked yet; then whether accepted sockets inherit.
        self._inherited: bool | None = None
        self._timeval = b""
        #: What the kernel reports back for it (it rounds to its clock tick).
        self._expected_timeval = b""

    def apply(
        self,
        listener: Any,
        request: Any,
        idle_timeout: float | None,
        nodelay: bool,
        tcp: tuple[TcpSetting, ...] = (),
    ) -> None:
        """Give ``request`` (just accepted on ``listener``) the server's connection options."""
        if (listener, idle_timeout, nodelay, tcp) != self._configured:
            # This connection was accepted before the listener had the options
            # (it may have copied the ones they replace: those are turned off).
            for level, name, value in self._configure(listener, idle_timeout, nodelay, tcp):
                request.setsockopt(level, name, value)
            self._set_each(request, idle_timeout, nodelay, tcp)
            return
        if self._inherited is None:
            self._inherited = self._has_options(request, nodelay, tcp)
        if not self._inherited:
            self._set_each(request, idle_timeout, nodelay, tcp)
        elif idle_timeout is not None:
            if type(request) is socket.socket and request.gettimeout() is None:
                request.__class__ = IdleTimeoutSocket
            else:
                apply_idle_timeout(request, idle_timeout)

    @staticmethod
    def _set_each(
        request: Any, idle_timeout: float | None, nodelay: bool, tcp: tuple[TcpSetting, ...]
    ) -> None:
        """The options, set on this connection itself."""
        if idle_timeout is not None:
            apply_idle_timeout(request, idle_timeout)
        if nodelay:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for level, name, value in tcp:
            request.setsockopt(level, name, value)

    def _configure(
        self, listener: Any, idle_timeout: float | None, nodelay: bool, tcp: tuple[TcpSetting, ...]
    ) -> tuple[TcpSetting, ...]:
        """Set the options on the listener; return the calls that turn off options dropped."""
        previous = self._configured
        self._configured = (listener, idle_timeout, nodelay, tcp)
        self._timeval = kernel_timeval(idle_timeout or 0.0)
        self._inherited = False
        now = {(level, name) for level, name, _value in tcp}
        resets = tuple(
            (level, name, _OFF[level, name])
            for level, name, _value in (previous[3] if previous is not None else ())
            if (level, name) in _OFF and (level, name) not in now
        )
        try:
            if not isinstance(listener, socket.socket) or listener.family not in (
                socket.AF_INET,
                socket.AF_INET6,
            ):
                return resets  # Unix sockets do not pass options on to accepted ones
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._timeval)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._timeval)
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
            for level, name, value in (*resets, *tcp):
                listener.setsockopt(level, name, value)
            self._expected_timeval = listener.getsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL_SIZE
            )
        except (OSError, ValueError):
            return resets  # closed, or not ours to change: set them per connection
        self._inherited = None  # check on the next accepted connection
        return resets

    def _has_options(self, request: Any, nodelay: bool, tcp: tuple[TcpSetting, ...]) -> bool:
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
            tcp_ok = all(request.getsockopt(level, name) == value for level, name, value in tcp)
        except OSError:
            return False
        return timeouts_ok and nodelay_ok and tcp_ok
