"""Idle timeouts kept by the kernel, reported to handlers as ``TimeoutError``.

``sock.settimeout(t)`` would do, but CPython then calls ``poll()`` before
every ``recv`` and ``send`` of the socket: twice the system calls on the
per-request path, measured at about half the round trips per second of a busy
connection. Instead, the socket stays in blocking mode and the kernel enforces
the timeout (``SO_RCVTIMEO``/``SO_SNDTIMEO``): a read or write that waits too
long fails with EAGAIN. The socket's class is switched to
:class:`IdleTimeoutSocket`, whose I/O methods turn that EAGAIN into the
``TimeoutError`` a handler expects from a timed-out socket (``rfile`` and
``wfile`` go through the same methods).

If a handler changes the socket's timeout itself (``settimeout``,
``StreamRequestHandler.timeout``), Python's own timeout takes over and the
kernel's one no longer matters: a socket in Python's timeout mode never
blocks in the kernel.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = ["IdleTimeoutSocket", "apply_idle_timeout", "kernel_timeval"]

_raw = socket.socket  # methods of the C socket type, called without a Python-level hop


def _timed_out(sock: socket.socket, exc: BlockingIOError) -> OSError:
    """EAGAIN on a blocking socket is the kernel's timeout; on a non-blocking one, not."""
    if sock.gettimeout() is None:
        return TimeoutError("the connection was idle too long")
    return exc


class IdleTimeoutSocket(socket.socket):
    """A connected socket whose kernel timeouts raise ``TimeoutError``."""

    __slots__ = ()

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        try:
            return _raw.recv(self, bufsize, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0, /) -> int:
        try:
            return _raw.recv_into(self, buffer, nbytes, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        try:
            return _raw.recvfrom(self, bufsize, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None

    def send(self, data: Any, flags: int = 0, /) -> int:
        try:
            return _raw.send(self, data, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None

    def sendall(self, data: Any, flags: int = 0, /) -> None:
        try:
            _raw.sendall(self, data, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None


def kernel_timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` that SO_RCVTIMEO and SO_SNDTIMEO take."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def apply_idle_timeout(sock: Any, seconds: float) -> None:
    """Make reads and writes of ``sock`` that wait longer than ``seconds`` raise TimeoutError."""
    if type(sock) is not socket.socket or sock.gettimeout() is not None:
        sock.settimeout(seconds)  # not a plain blocking socket: use Python's timeout
        return
    timeval = kernel_timeval(seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.__class__ = IdleTimeoutSocket
