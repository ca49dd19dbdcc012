"""A tiny HTTP/1.1 responder driven by someone else's ``select`` loop (the master's).

The master serves ``/metrics`` and ``/healthz`` without a thread (it forks;
see :mod:`sockserve.runner.metrics`), so this endpoint never blocks: the
owner adds :meth:`Endpoint.readers` and :meth:`Endpoint.writers` to its
``select`` and calls :meth:`Endpoint.readable` and :meth:`Endpoint.writable`
for what is ready, and :meth:`Endpoint.expire` now and then. Each client
sends one request (``GET`` or ``HEAD``; headers up to 8 KiB), gets one answer
and is closed; a client has 5 seconds for it all, and at most 16 are kept
(the oldest is dropped for a new one). A scraper, slow or hostile, costs the
master a few system calls and never a wait.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Answer", "Endpoint", "Reply"]

log = logging.getLogger("sockserve.master")

#: Limits: header bytes, seconds per request, clients at once.
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
MAX_CLIENTS = 16

#: (status, content type, body) of one answer.
Reply = tuple[int, str, bytes]
#: What the owner answers for a path (``/metrics``...): called when a request is complete.
Answer = Callable[[str], Reply]

_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    received: bytes = b""
    reply: bytes = b""
    sent: int = 0


class Endpoint:
    """A listening socket and its clients (see the module doc)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock: socket.socket | None = sock
        self._clients: dict[int, _Client] = {}

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def readers(self) -> list[int]:
        if self.sock is None:
            return []
        waiting = [fd for fd, client in self._clients.items() if not client.reply]
        return [self.sock.fileno(), *waiting]

    def writers(self) -> list[int]:
        return [fd for fd, client in self._clients.items() if client.reply]

    def readable(self, fd: int, answer: Answer) -> None:
        """``fd`` (the listener, or a client) is readable; ``answer`` makes the reply."""
        if self.sock is not None and fd == self.sock.fileno():
            self._accept()
            return
        client = self._clients.get(fd)
        if client is None:
            return
        try:
            data = client.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.received += data
        if b"\r\n\r\n" in client.received or b"\n\n" in client.received:
            client.reply = _respond(client.received, answer)
        elif len(client.received) >= MAX_REQUEST:
            client.reply = _encode((431, "text/plain", b"request header too large\n"))
        else:
            return
        self.writable(fd)  # most replies fit in the socket buffer at once

    def writable(self, fd: int) -> None:
        client = self._clients.get(fd)
        if client is None:
            return
        try:
            client.sent += client.sock.send(client.reply[client.sent :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            client.sent = len(client.reply)  # the client is gone: nothing left to send
        if client.sent >= len(client.reply):
            self._drop(client)

    def expire(self, now: float) -> None:
        for client in [c for c in self._clients.values() if now >= c.deadline]:
            self._drop(client)

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the next turn tries again
                log.warning("metrics: accept failed: %s", exc)
                return
            if len(self._clients) >= MAX_CLIENTS:
                self._drop(min(self._clients.values(), key=lambda c: c.deadline))
            sock.setblocking(False)
            self._clients[sock.fileno()] = _Client(sock, time.monotonic() + REQUEST_TIMEOUT)

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(OSError):
            client.sock.close()


def _respond(request: bytes, answer: Answer) -> bytes:
    parts = request.split(b"\n", 1)[0].decode("latin-1").split()
    if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
        return _encode((405, "text/plain", b"only GET and HEAD\n"))
    reply = _encode(answer(parts[1].split("?", 1)[0]))
    if parts[0] == "HEAD":
        return reply.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    return reply


def _encode(reply: Reply) -> bytes:
    status, content_type, body = reply
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
