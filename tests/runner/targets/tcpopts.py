"""Handlers that report the TCP options of their own connection, as the server side sees them.

One line: ``keepalive idle interval count user_timeout nodelay`` (the
``getsockopt`` values of the accepted socket), then the connection ends.
Used by the library tests (every strategy) and the runner's (its flags).
"""

from __future__ import annotations

import socket
from typing import Any

import sockserve

OPTIONS = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    (socket.IPPROTO_TCP, socket.TCP_NODELAY),
)


def report(sock: Any) -> bytes:
    return " ".join(str(sock.getsockopt(level, name)) for level, name in OPTIONS).encode() + b"\n"


class Report(sockserve.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(report(self.request))


class AsyncReport(sockserve.AsyncStreamRequestHandler):
    async def handle(self) -> None:
        self.writer.write(report(self.request))
        await self.writer.drain()
