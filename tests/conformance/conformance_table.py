"""The conformance table: every server class, and the harness that drives any of them.

A test in this directory that takes the ``kind`` argument runs once per row of
``SERVER_KINDS``. To put a new strategy through the whole suite, append a row::

    ServerKind("ThreadPoolTCPServer", sockserve.ThreadPoolTCPServer, STREAM, INET, THREAD),

``@pytest.mark.kinds(predicate)`` restricts a test to the rows for which
``predicate(kind)`` is true (e.g. only concurrent strategies).

Hooks that run in a forked child cannot report through memory, so the
``Recorder`` appends one JSON line per call to a file, tagged with the pid;
a test reads it back once the server is closed (which waits for children and
threads).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sockserve
from helpers.net import TIMEOUT, Net

STREAM = "stream"
DATAGRAM = "datagram"

INET = socket.AF_INET
UNIX = socket.AF_UNIX

SYNC = "sync"  # requests handled one at a time, on the serving thread
THREAD = "thread"  # concurrently, in threads of this process
FORK = "fork"  # concurrently, each in a forked child process
ASYNC = "async"  # concurrently, as tasks on an event loop thread (async handlers)


@dataclass(frozen=True)
class ServerKind:
    """One row of the table: a server class and what a client needs to know to talk to it."""

    id: str
    cls: type[Any]
    transport: str  # STREAM or DATAGRAM
    family: socket.AddressFamily
    concurrency: str  # SYNC, THREAD or FORK

    @property
    def concurrent(self) -> bool:
        return self.concurrency != SYNC

    @property
    def forking(self) -> bool:
        return self.concurrency == FORK

    @property
    def stream(self) -> bool:
        return self.transport == STREAM

    @property
    def asynchronous(self) -> bool:
        return self.concurrency == ASYNC

    @property
    def handler_base(self) -> type[Any]:
        if self.asynchronous:
            if not self.stream:
                return sockserve.AsyncDatagramRequestHandler
            return sockserve.AsyncStreamRequestHandler
        if self.stream:
            return sockserve.StreamRequestHandler
        return sockserve.DatagramRequestHandler


class _ReadablePoolTCPServer(sockserve.ThreadPoolTCPServer):
    """The pool with dispatch="readable": connections wait for their first byte unthreaded."""

    dispatch = "readable"


SERVER_KINDS: list[ServerKind] = [
    ServerKind("TCPServer", sockserve.TCPServer, STREAM, INET, SYNC),
    ServerKind("ThreadingTCPServer", sockserve.ThreadingTCPServer, STREAM, INET, THREAD),
    ServerKind("ForkingTCPServer", sockserve.ForkingTCPServer, STREAM, INET, FORK),
    ServerKind("UDPServer", sockserve.UDPServer, DATAGRAM, INET, SYNC),
    ServerKind("ThreadingUDPServer", sockserve.ThreadingUDPServer, DATAGRAM, INET, THREAD),
    ServerKind("ForkingUDPServer", sockserve.ForkingUDPServer, DATAGRAM, INET, FORK),
    ServerKind("UnixStreamServer", sockserve.UnixStreamServer, STREAM, UNIX, SYNC),
    ServerKind(
        "ThreadingUnixStreamServer", sockserve.ThreadingUnixStreamServer, STREAM, UNIX, THREAD
    ),
    ServerKind("ForkingUnixStreamServer", sockserve.ForkingUnixStreamServer, STREAM, UNIX, FORK),
    ServerKind("UnixDatagramServer", sockserve.UnixDatagramServer, DATAGRAM, UNIX, SYNC),
    ServerKind(
        "ThreadingUnixDatagramServer",
        sockserve.ThreadingUnixDatagramServer,
        DATAGRAM,
        UNIX,
        THREAD,
    ),
    ServerKind(
        "ForkingUnixDatagramServer", sockserve.ForkingUnixDatagramServer, DATAGRAM, UNIX, FORK
    ),
    ServerKind("ThreadPoolTCPServer", sockserve.ThreadPoolTCPServer, STREAM, INET, THREAD),
    ServerKind("ThreadPoolTCPServer-readable", _ReadablePoolTCPServer, STREAM, INET, THREAD),
    ServerKind("ThreadPoolUDPServer", sockserve.ThreadPoolUDPServer, DATAGRAM, INET, THREAD),
    ServerKind(
        "ThreadPoolUnixStreamServer", sockserve.ThreadPoolUnixStreamServer, STREAM, UNIX, THREAD
    ),
    ServerKind(
        "ThreadPoolUnixDatagramServer",
        sockserve.ThreadPoolUnixDatagramServer,
        DATAGRAM,
        UNIX,
        THREAD,
    ),
    ServerKind("AsyncTCPServer", sockserve.AsyncTCPServer, STREAM, INET, ASYNC),
    ServerKind("AsyncUnixStreamServer", sockserve.AsyncUnixStreamServer, STREAM, UNIX, ASYNC),
    ServerKind("AsyncUDPServer", sockserve.AsyncUDPServer, DATAGRAM, INET, ASYNC),
    ServerKind("AsyncUnixDatagramServer", sockserve.AsyncUnixDatagramServer, DATAGRAM, UNIX, ASYNC),
]


# -- clients -----------------------------------------------------------------


class StreamClient:
    """One connection; lines in, lines out."""

    def __init__(self, family: socket.AddressFamily, address: Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self._buffer = b""

    def sockname(self) -> Any:
        return self.sock.getsockname()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_line(self) -> bytes:
        """The next line the server sent (b"" if it closed first); waits up to TIMEOUT."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self._buffer += chunk
        line, sep, self._buffer = self._buffer.partition(b"\n")
        return line + sep

    def leftover(self) -> bytes:
        """Everything the server sent and was not read yet, up to its end of stream.

        Call once the server is closed: a connection it never accepted is reset,
        which counts as having received nothing more.
        """
        data, self._buffer = self._buffer, b""
        try:
            while chunk := self.sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def close(self) -> None:
        self.sock.close()


class DatagramClient:
    """A socket bound to its own address, so the server can reply; one datagram per request."""

    def __init__(self, family: socket.AddressFamily, address: Any, local: Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.settimeout(TIMEOUT)
            self.sock.bind(local)
        except BaseException:
            self.sock.close()
            raise
        self.address = address

    def sockname(self) -> Any:
        return self.sock.getsockname()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.address)

    def recv_line(self) -> bytes:
        """The next reply datagram; waits up to TIMEOUT."""
        data, _sender = self.sock.recvfrom(65536)
        return data

    def leftover(self) -> bytes:
        """Every reply already queued, without waiting (call once the server is closed)."""
        data = b""
        self.sock.setblocking(False)
        try:
            while True:
                data += self.sock.recv(65536)
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(TIMEOUT)
        return data

    def close(self) -> None:
        self.sock.close()


Client = StreamClient | DatagramClient


# -- hook recording --------------------------------------------------------------


class Recorder:
    """Appends ``{"pid": ..., "hook": ..., **info}`` lines to a file, from any process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, hook: str, **info: Any) -> None:
        line = json.dumps({"pid": os.getpid(), "hook": hook, **info}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]

    def hooks(self, *, pid: int | None = None, exclude_pid: int | None = None) -> list[str]:
        """Hook names in call order, optionally only those of (or not of) one process."""
        return [
            event["hook"]
            for event in self.events()
            if (pid is None or event["pid"] == pid)
            and (exclude_pid is None or event["pid"] != exclude_pid)
        ]


# -- the harness ---------------------------------------------------------------------


class Harness:
    """Builds servers and clients of one ``ServerKind``; everything is closed at teardown."""

    def __init__(self, kind: ServerKind, tmp_path: Path, net: Net) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.net = net
        self._names = 0
        self.recorder = Recorder(tmp_path / "hooks.jsonl")

    def _unique(self, prefix: str) -> str:
        self._names += 1
        return str(self.tmp_path / f"{prefix}{self._names}.sock")

    def address(self) -> Any:
        """A fresh address to bind: port 0 on 127.0.0.1, or a new path in tmp_path."""
        if self.kind.family == UNIX:
            return self._unique("s")
        return ("127.0.0.1", 0)

    def server_class(self, **attrs: Any) -> type[Any]:
        """The kind's class, or a subclass overriding ``attrs`` (methods or attributes)."""
        if not attrs:
            return self.kind.cls
        return type(f"Custom{self.kind.id}", (self.kind.cls,), attrs)

    def server(
        self,
        handler: Any = None,
        *,
        bind_and_activate: bool = True,
        **attrs: Any,
    ) -> Any:
        """A server of this kind (with ``attrs`` overridden), closed at teardown."""
        cls = self.server_class(**attrs)
        server = cls(self.address(), handler or self.echo_handler(), bind_and_activate)
        return self.net.server(server)

    def client(self, server: Any) -> Client:
        """A client of ``server``, closed at teardown."""
        client: Client
        if self.kind.stream:
            client = StreamClient(self.kind.family, server.server_address)
        else:
            local = self._unique("c") if self.kind.family == UNIX else ("127.0.0.1", 0)
            client = DatagramClient(self.kind.family, server.server_address, local)
        return self.net.closing(client)  # type: ignore[no-any-return]

    def echo_handler(self) -> type[Any]:
        """A handler that answers one line with the same line."""
        return self.line_handler(lambda line: line)

    def line_handler(self, respond: Callable[[bytes], bytes]) -> type[Any]:
        """A handler that reads one line and writes ``respond(line)`` (which may raise).

        ``respond`` is plain blocking code; for async kinds it runs in a thread
        (``asyncio.to_thread``), so it may wait without stopping the event loop.
        """
        if self.kind.asynchronous and not self.kind.stream:

            class AsyncPacketHandler(sockserve.AsyncDatagramRequestHandler):
                async def handle(self) -> None:
                    self.wfile.write(await asyncio.to_thread(respond, self.rfile.readline()))

            return AsyncPacketHandler
        if self.kind.asynchronous:

            class AsyncLineHandler(sockserve.AsyncStreamRequestHandler):
                async def handle(self) -> None:
                    line = await self.reader.readline()
                    self.writer.write(await asyncio.to_thread(respond, line))
                    await self.writer.drain()

            return AsyncLineHandler

        class LineHandler(self.kind.handler_base):  # type: ignore[name-defined,misc]
            def handle(self) -> None:
                self.wfile.write(respond(self.rfile.readline()))

        return LineHandler

    def recording_handler(self) -> type[Any]:
        """An echo handler that records setup/handle/finish."""
        record = self.recorder
        if self.kind.asynchronous and not self.kind.stream:

            class AsyncRecordingPacketEcho(sockserve.AsyncDatagramRequestHandler):
                async def setup(self) -> None:
                    record("setup")
                    await super().setup()

                async def handle(self) -> None:
                    record("handle")
                    self.wfile.write(self.packet)

                async def finish(self) -> None:
                    record("finish")
                    await super().finish()

            return AsyncRecordingPacketEcho
        if self.kind.asynchronous:

            class AsyncRecordingEcho(sockserve.AsyncStreamRequestHandler):
                async def setup(self) -> None:
                    record("setup")
                    await super().setup()

                async def handle(self) -> None:
                    record("handle")
                    self.writer.write(await self.reader.readline())
                    await self.writer.drain()

                async def finish(self) -> None:
                    record("finish")
                    await super().finish()

            return AsyncRecordingEcho

        class RecordingEcho(self.kind.handler_base):  # type: ignore[name-defined,misc]
            def setup(self) -> None:
                record("setup")
                super().setup()

            def handle(self) -> None:
                record("handle")
                self.wfile.write(self.rfile.readline())

            def finish(self) -> None:
                record("finish")
                super().finish()

        return RecordingEcho

    def recording_hooks(self, *names: str) -> dict[str, Any]:
        """Server-method overrides that record their call, then do what the class does."""
        record = self.recorder
        cls = self.kind.cls
        overrides: dict[str, Any] = {}
        for name in names:
            if name == "finish_request" and self.kind.asynchronous:
                # The async strategy runs the handler through the hook's coroutine
                # form; it stands in the same place in the order.
                async def coroutine_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
                    record("finish_request")
                    return await cls.finish_request_async(self, *args, **kwargs)

                overrides["finish_request_async"] = coroutine_hook
                continue

            def hook(self: Any, *args: Any, _name: str = name, **kwargs: Any) -> Any:
                record(_name)
                return getattr(cls, _name)(self, *args, **kwargs)

            overrides[name] = hook
        return overrides

    def round_trip(self, server: Any, line: bytes = b"hello\n") -> bytes:
        """Send one line from a new client and return the reply (the server must be serving)."""
        client = self.client(server)
        client.send(line)
        return client.recv_line()
