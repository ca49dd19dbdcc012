"""A line protocol that lets a test see which process serves it, and hold a request open.

The handler answers one line per line received, until the client closes:

* ``pid``: the serving process's pid (which worker answered);
* ``id``: ``$SOCKSERVE_TEST_ID``, the instance's name (behind a proxy);
* ``echo TEXT``: ``TEXT`` back;
* ``addr``: the client's address as the server sees it (its host; behind a
  PROXY header, the real client's);
* ``block``: never answer: the handler waits forever (a stuck worker);
* anything else: ``?``.

A connection stays in flight (its handler running) between lines, so a test
holds a request open for as long as it likes and ends it by sending another
line and closing.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import sockserve

NOT_A_TARGET = 42


class NotAHandler:
    """A class, but neither a request handler nor a server."""


class Handler(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            self.wfile.write(answer(line.strip(), self.client_address))


class AsyncHandler(sockserve.AsyncStreamRequestHandler):
    """The same protocol with coroutines (``block`` waits without holding the loop)."""

    async def handle(self) -> None:
        while line := await self.reader.readline():
            command = line.strip()
            if command == b"block":
                await asyncio.Event().wait()
            if command == b"threads":
                self.writer.write(b"%d\n" % threading.active_count())
            else:
                self.writer.write(answer(command, self.client_address))
            await self.writer.drain()


def answer(command: bytes, client_address: object = None) -> bytes:
    if command == b"addr":
        host = client_address[0] if isinstance(client_address, tuple) else client_address
        return str(host).encode() + b"\n"
    if command == b"pid":
        return b"%d\n" % os.getpid()
    if command == b"id":
        return os.environ.get("SOCKSERVE_TEST_ID", "-").encode() + b"\n"
    if command.startswith(b"echo "):
        return command[5:] + b"\n"
    if command == b"block":
        threading.Event().wait()  # the worker is killed, never woken
    return b"?\n"


class PidServer(sockserve.ThreadingTCPServer):
    """A server class target: it names its handler itself."""

    daemon_threads = True

    def __init__(self, server_address: object, bind_and_activate: bool = True) -> None:
        super().__init__(server_address, Handler, bind_and_activate)


def make_server(address: object) -> sockserve.ThreadPoolTCPServer:
    """A factory target."""
    return sockserve.ThreadPoolTCPServer(address, Handler, bind_and_activate=False)


def bad_factory(address: object) -> str:
    """A factory that returns something that is not a server."""
    return "not a server"


class SlowAcceptServer(sockserve.TCPServer):
    """A sync server whose accept path is slow, as a busy or descheduled worker's is.

    With two workers on one listener both see it readable when a client
    connects, both get to ``accept()``, and one of them finds nothing there.
    """

    def __init__(self, server_address: object, bind_and_activate: bool = True) -> None:
        super().__init__(server_address, Handler, bind_and_activate)

    def get_request(self) -> tuple[object, object]:
        time.sleep(0.3)  # the window in which the other worker takes the connection
        return super().get_request()


class DatagramHandler(sockserve.DatagramRequestHandler):
    """Answers each datagram with the same protocol (for udp:// listeners only)."""

    def handle(self) -> None:
        self.wfile.write(answer(self.rfile.read().strip(), self.client_address))
