"""Handlers and helpers shared by the async-server tests.

Handlers run on the server's event loop thread; what they observe is handed to
the test thread through a :class:`Record` (a queue read with a bounded wait).
"""

from __future__ import annotations

import queue
import socket
from typing import Any, Literal

import sockserve
from helpers.clients import recv_line

#: Upper bound, in seconds, for every wait in these tests.
WAIT = 10.0

#: An event loop an async server can be asked for.
Loop = Literal["asyncio", "uvloop"]

#: Event loops the async servers can run on (uvloop is a dev dependency).
LOOPS: list[Loop] = ["asyncio", "uvloop"]


class LineEcho(sockserve.AsyncStreamRequestHandler):
    """Echoes every line until the client closes its side."""

    async def handle(self) -> None:
        while line := await self.reader.readline():
            self.writer.write(line)
            await self.writer.drain()


class Record:
    """Values a handler reports (from the loop thread) for the test thread to read."""

    def __init__(self) -> None:
        self._items: queue.Queue[Any] = queue.Queue()

    def put(self, value: Any) -> None:
        self._items.put(value)

    def get(self, timeout: float = WAIT) -> Any:
        return self._items.get(timeout=timeout)

    def empty(self) -> bool:
        return self._items.empty()


#: What a flooding handler tries to send to a client that reads nothing: far more
#: than the kernel's buffers on both sides take, so the writes must block.
FLOOD = 10 * 2**20


def flood_handler(seen: Record, writing: Record | None = None) -> type[Any]:
    """A handler that, after one line, writes ``FLOOD`` bytes; ``seen`` gets what ended it.

    ``seen`` receives the exception that cut the writes, then what a later
    write raised (None if it passed for sent: the bug this guards against), or
    "all sent". ``writing`` (if given) is told when the flood begins.
    """

    class Flood(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            await self.reader.readline()
            if writing is not None:
                writing.put(True)
            block = b"x" * 65536
            try:
                for _ in range(FLOOD // len(block)):  # blocks once the client's buffers are full
                    self.writer.write(block)
                    await self.writer.drain()
            except Exception as exc:
                seen.put(exc)
                try:  # the data has nowhere to go: a later write must say so too
                    self.writer.write(b"more")
                    await self.writer.drain()
                except Exception as later:
                    seen.put(later)
                else:
                    seen.put(None)
                raise
            seen.put("all sent")

    return Flood


def tcp_server(handler: type[Any], **options: Any) -> sockserve.AsyncTCPServer:
    """An AsyncTCPServer on 127.0.0.1, any free port."""
    return sockserve.AsyncTCPServer(("127.0.0.1", 0), handler, **options)


def echo_line(client: socket.socket, line: bytes) -> bytes:
    """Send one line and return the line that comes back."""
    client.sendall(line)
    return recv_line(client)


def peer_name(client: socket.socket) -> str:
    """How the server's log lines name this client: ``host:port``."""
    host, port = client.getsockname()[:2]
    return f"{host}:{port}"
