"""Server kinds and handlers shared by the drain tests.

A note on forking servers: here the clients live in the same process as the
server, so every child inherits copies of the client sockets opened before it
was forked. Closing a client in the test then does not end the connection for
a child; the handlers below are therefore ended by what the client *sends*
(or by the drain's abort), never by the client closing.
"""

from __future__ import annotations

import os
from typing import Any

import sockserve as socketserver

KINDS = ["threading", "pool", "forking"]
THREAD_KINDS = ["threading", "pool"]


class ForkingTCPServer64(socketserver.ForkingTCPServer):
    """Room for 50 concurrent children (the default max_children is 40)."""

    max_children = 64


def make_server(kind: str, handler: type[Any], **options: Any) -> socketserver.TCPServer:
    address = ("127.0.0.1", 0)
    if kind == "threading":
        return socketserver.ThreadingTCPServer(address, handler, **options)
    if kind == "pool":
        options.setdefault("max_workers", 64)
        options.setdefault("max_pending", 64)
        return socketserver.ThreadPoolTCPServer(address, handler, **options)
    if kind == "forking":
        return ForkingTCPServer64(address, handler, **options)
    raise ValueError(kind)


class TwoStep(socketserver.StreamRequestHandler):
    """Reads a line, answers "ready", then echoes the next line and ends.

    Its amount of work is bounded by the client: it ends when the client sends
    its second line.
    """

    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"ready\n")
        self.wfile.write(self.rfile.readline())


class Stuck(socketserver.BaseRequestHandler):
    """Says its pid, then blocks on recv until the socket is shut down (or killed)."""

    returned: list[bytes] = []  # noqa: RUF012 - replaced per test by a subclass

    def handle(self) -> None:
        self.request.sendall(b"%d\n" % os.getpid())
        self.returned.append(self.request.recv(1))
