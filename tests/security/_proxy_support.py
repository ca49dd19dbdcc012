"""What the PROXY protocol tests share: servers of every strategy and handlers that report.

The handlers answer each line they read with one JSON line saying what the
server made of the connection (the client address, the peer, the line as
received, the PROXY header), so a test reads the answer from the socket:
that works for a forked child as well as for a thread or a task.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import sockserve
from helpers.clients import Background, connect, recv_line

WAIT = 10.0
LOOPBACK = ("127.0.0.1", 0)
#: Every strategy, and the pool with dispatch="readable" (WaitForData after the header).
KINDS = ["inline", "threads", "pool", "pool-readable", "fork", "async"]
#: Strategies that serve several connections at once.
CONCURRENT = [kind for kind in KINDS if kind != "inline"]

Report = dict[str, Any]


def describe(server: Any, request: Any, client_address: Any, line: bytes) -> bytes:
    """The JSON line a handler answers with."""
    info = server.connection_info(request)
    proxy = info.proxy
    header = None
    if proxy is not None:
        header = {
            "version": proxy.version,
            "command": proxy.command.name,
            "tlvs": {str(kind): value.hex() for kind, value in proxy.tlvs},
            "authority": proxy.authority,
        }
    report = {
        "client": list(client_address) if isinstance(client_address, tuple) else client_address,
        "peer": list(info.peer) if isinstance(info.peer, tuple) else info.peer,
        "line": line.decode("latin-1"),
        "proxy": header,
    }
    return json.dumps(report).encode() + b"\n"


#: A line after which the handlers wait for another one (a connection held open).
HOLD = b"hold\n"


class Reporter(sockserve.StreamRequestHandler):
    """Answers a line (read through ``rfile``) with a report; after ``hold``, another one.

    It never waits for EOF: a forked child holds a copy of every socket the
    test process had open when it forked, the client's too, so EOF may never
    come.
    """

    def handle(self) -> None:
        while line := self.rfile.readline():
            self.wfile.write(describe(self.server, self.request, self.client_address, line))
            if line != HOLD:
                return


class RecvReporter(sockserve.BaseRequestHandler):
    """The same with plain ``self.request.recv``: what a stdlib handler would do."""

    def handle(self) -> None:
        data = b""
        while b"\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        line, _, _ = data.partition(b"\n")
        report = describe(self.server, self.request, self.client_address, line + b"\n")
        self.request.sendall(report)


class AsyncReporter(sockserve.AsyncStreamRequestHandler):
    async def handle(self) -> None:
        while line := await self.reader.readline():
            self.writer.write(describe(self.server, self.request, self.client_address, line))
            await self.writer.drain()
            if line != HOLD:
                return


def make_server(
    kind: str,
    handler: type[Any] = Reporter,
    address: Any = LOOPBACK,
    **options: Any,
) -> Any:
    """A server of strategy ``kind`` serving ``handler`` (the async one for "async")."""
    if kind == "async":
        if handler is Reporter:
            handler = AsyncReporter
        cls: Any = (
            sockserve.AsyncUnixStreamServer
            if isinstance(address, str)
            else sockserve.AsyncTCPServer
        )
        return cls(address, handler, event_loop="asyncio", **options)
    unix = isinstance(address, str)
    if kind == "pool-readable":
        options = {"dispatch": "readable", **options}
    cls = {
        "inline": sockserve.UnixStreamServer if unix else sockserve.TCPServer,
        "threads": sockserve.ThreadingUnixStreamServer if unix else sockserve.ThreadingTCPServer,
        "pool": sockserve.ThreadPoolUnixStreamServer if unix else sockserve.ThreadPoolTCPServer,
        "pool-readable": (
            sockserve.ThreadPoolUnixStreamServer if unix else sockserve.ThreadPoolTCPServer
        ),
        "fork": sockserve.ForkingUnixStreamServer if unix else sockserve.ForkingTCPServer,
    }[kind]
    return cls(address, handler, **options)


def read_report(sock: socket.socket) -> Report:
    line = recv_line(sock)
    assert line.endswith(b"\n"), f"no report, got {line!r}"
    report: Report = json.loads(line)
    return report


def ask(address: Any, data: bytes, *, source_ip: str | None = None) -> Report:
    """One connection: send ``data`` at once, return the first report, close."""
    with connect(address, source_ip=source_ip) as sock:
        sock.sendall(data)
        return read_report(sock)


def trickle(sock: socket.socket, data: bytes, pause: float = 0.002) -> Background:
    """Send ``data`` one byte at a time from a thread (each byte its own segment)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send() -> None:
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(pause)  # pacing the sender, not waiting for anything

    return Background(send, name="trickle")


def drip(sock: socket.socket, data: bytes, stop: threading.Event) -> Background:
    """A slowloris: ``data`` one byte every 50 ms, until ``stop`` or the connection fails."""

    def send() -> None:
        for i in range(len(data)):
            if stop.wait(0.05):
                return
            try:
                sock.sendall(data[i : i + 1])
            except OSError:
                return

    return Background(send, name="slowloris")


def waits_for(server: Any, predicate: Callable[[Any], bool]) -> None:
    assert server.wait_for(predicate, WAIT), server.stats()
