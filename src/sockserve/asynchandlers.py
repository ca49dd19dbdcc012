"""``AsyncStreamRequestHandler``: the StreamRequestHandler idea, with coroutines.

For many thousands of mostly idle connections a thread each is too much; an
async handler costs a coroutine. The shape is the one socketserver users
know: ``setup()``, ``handle()`` and ``finish()`` (now ``async``), with
``self.request``, ``self.client_address`` and ``self.server``, plus an
asyncio ``self.reader`` (StreamReader) and ``self.writer`` (StreamWriter)::

    class Echo(sockserve.AsyncStreamRequestHandler):
        async def handle(self):
            while line := await self.reader.readline():
                self.writer.write(line)
                await self.writer.drain()

Served by :class:`sockserve.AsyncTCPServer` (or ``sockserve run`` with such a
handler), which gives it the same limits as the other servers:

* ``max_line`` bounds ``reader.readline()``: a longer line raises
  :class:`~sockserve.errors.LineTooLong` (the handler's attribute, else the
  server's, else asyncio's 64 KiB);
* ``idle_timeout``: when nothing was received or written for that long, the
  pending read raises ``TimeoutError`` and the connection is dropped;
* a drain sets ``server.draining`` and, at its deadline, cancels the handler.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, SupportsIndex

from sockserve._types import Address
from sockserve.errors import LineTooLong

if TYPE_CHECKING:
    from sockserve.servers import BaseServer

__all__ = ["AsyncStreamRequestHandler"]

#: asyncio's own default StreamReader limit, used when no max_line applies.
_DEFAULT_LIMIT = 2**16


class _ConnectionReader(asyncio.StreamReader):
    """A StreamReader that notes when data last arrived and names an overlong line."""

    last_activity = 0.0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.last_activity = time.monotonic()
        super().feed_data(data)

    async def readline(self) -> bytes:
        limit: int = self._limit  # type: ignore[attr-defined]
        try:
            line = await super().readline()
        except ValueError as exc:
            # asyncio raises a bare ValueError past the limit (and drops the data).
            raise LineTooLong(limit) from exc
        # asyncio's limit counts the bytes before the separator, so it returns
        # lines of limit + 1 bytes; max_line counts the terminator too.
        if len(line) > limit:
            raise LineTooLong(limit)
        return line


class _ConnectionWriter(asyncio.StreamWriter):
    """A StreamWriter that notes when the handler last wrote (in the reader's record)."""

    activity: _ConnectionReader

    def write(self, data: Any) -> None:
        self.activity.last_activity = time.monotonic()
        super().write(data)


class AsyncStreamRequestHandler:
    """Serves one connection with coroutines; override ``handle`` (see the module doc)."""

    #: Longest line ``reader.readline()`` returns; None: the server's ``max_line``.
    max_line: int | None = None

    #: Marks the class for servers, which refuse handlers they cannot run.
    _is_async_handler = True

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def __init__(self, request: socket.socket, client_address: Address, server: BaseServer):
        self.request = request
        self.client_address = client_address
        self.server = server
        #: Set when the connection was dropped for being idle too long.
        self.timed_out = False
        self._watchdog: asyncio.TimerHandle | None = None

    async def setup(self) -> None:
        """Wrap the connection in ``self.reader`` / ``self.writer`` (runs first)."""
        loop = asyncio.get_running_loop()
        max_line = self.max_line
        if max_line is None:
            max_line = getattr(self.server, "max_line", None)
        reader = _ConnectionReader(limit=max_line or _DEFAULT_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        # A duplicate descriptor for the event loop: the request socket stays the
        # server's, to read the access log's counters, shut down at a drain's
        # deadline and close last (which sends the FIN).
        duplicate = self.request.dup()
        try:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=duplicate)
        except BaseException:
            duplicate.close()
            raise
        self.reader = reader
        writer = _ConnectionWriter(transport, protocol, reader, loop)
        writer.activity = reader
        self.writer = writer
        reader.last_activity = time.monotonic()
        idle_timeout = getattr(self.server, "idle_timeout", None)
        if idle_timeout is not None:
            self._watchdog = loop.call_later(idle_timeout, self._check_idle, idle_timeout)

    def _check_idle(self, idle_timeout: float) -> None:
        reader = self.reader
        assert isinstance(reader, _ConnectionReader)
        quiet_for = time.monotonic() - reader.last_activity
        if quiet_for < idle_timeout:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(
                idle_timeout - quiet_for, self._check_idle, idle_timeout
            )
            return
        self._watchdog = None
        self.timed_out = True
        reader.set_exception(TimeoutError("timed out: the connection was idle too long"))
        self.writer.transport.abort()
        # The transport owns a duplicate descriptor: aborting it leaves the
        # connection open. Shut the socket itself down so the client learns now.
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed or reset

    async def handle(self) -> None:
        """Serve the connection."""

    async def finish(self) -> None:
        """Flush and close the stream (runs last, also after ``handle`` raised)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        writer = getattr(self, "writer", None)
        if writer is None:
            return
        try:
            if not writer.transport.is_closing():
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client is gone: nothing left to flush to
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, TimeoutError):
                pass

    async def _run(self) -> None:
        """setup, handle, finish: what the stdlib's handler constructor does, awaited."""
        await self.setup()
        try:
            await self.handle()
        finally:
            await self.finish()
