"""A lean stream for async handlers: one object that is the protocol, the reader and the writer.

asyncio's own streams cost three objects per connection (a ``StreamReader``,
a ``StreamWriter`` and a ``StreamReaderProtocol``), a ``bytearray`` copy of
every chunk received and a Future per read. :class:`Stream` keeps the API a
handler uses, on one object with ``__slots__``:

* reading: ``read``, ``readline`` (bounded by ``max_line``: ``LineTooLong``),
  ``readexactly``, ``readuntil``, ``at_eof``, ``exception``, ``async for line``;
  asyncio's ``IncompleteReadError`` and ``LimitOverrunError`` where asyncio
  raises them;
* writing: ``write``, ``writelines``, ``write_eof``, ``can_write_eof``,
  ``drain``, ``close``, ``is_closing``, ``wait_closed``, ``get_extra_info``,
  ``transport``, ``start_tls``.

What makes it cheaper: a chunk received while the handler waits is handed to
it as is (no copy); data is copied into a buffer only when it arrives faster
than the handler reads; a read with data already buffered returns without a
Future; ``drain()`` below the transport's high-water mark returns without
suspending. Flow control both ways: reading pauses when the handler leaves
more than ``limit`` bytes unread, and ``drain()`` waits while the transport's
buffer is over its high-water mark.

``idle_timeout`` (one meaning everywhere: a read or a write waiting with no
byte moving) is not a timer per connection re-armed on every read: the
strategy runs one sweep per loop (:class:`IdleSweep`), and a stream only
notes, when it starts to wait, the sweep's tick. A wait that saw no progress
for ``idle_timeout`` raises ``TimeoutError`` in the handler; a write that
cannot go out in that time also aborts the connection, since its data has
nowhere to go. Once a connection is cut (that abort, or a reset), every
later ``write`` and ``drain`` raises the error that cut it: a handler never
mistakes data that went nowhere for data sent.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

from sockserve.errors import LineTooLong
from sockserve.observability.access import tcp_byte_counts
from sockserve.security.tls import loop_handshake_failure, record_server_names

__all__ = ["ConnectionSocket", "IdleSweep", "Stream"]

#: Unread bytes beyond which reading from the socket pauses (asyncio's default limit).
DEFAULT_LIMIT = 2**16
#: ``_waiting_since_tick`` of a stream that does not wait: never old enough to time out.
NOT_WAITING = 1 << 62


class IdleSweep:
    """One periodic check per event loop of every stream that waits (see the module doc).

    ``tick`` counts sweeps; a stream that starts to wait records it. A wait
    that has seen ``idle_ticks`` sweeps go by without progress times out, so
    a timeout fires between ``idle_timeout`` and one sweep interval later.
    """

    def __init__(self, idle_timeout: float | None, streams: Callable[[], Iterable[Stream]]) -> None:
        self.idle_timeout = idle_timeout
        #: The streams to look at: the connections in flight (asked once per
        #: sweep, so no set of streams is kept up to date per connection).
        self._streams = streams
        #: Seconds between sweeps: a tenth of the timeout, between 50 ms and 1 s.
        self.interval = 1.0 if idle_timeout is None else min(1.0, max(0.05, idle_timeout / 10))
        self.idle_ticks = 0 if idle_timeout is None else max(1, round(idle_timeout / self.interval))
        self.tick = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.idle_timeout is not None and self._handle is None:
            self._handle = loop.call_later(self.interval, self._sweep, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.tick += 1
        oldest = self.tick - self.idle_ticks
        for stream in self._streams():
            if stream._waiting_since_tick <= oldest:
                stream._check_idle(self.tick)
        self._handle = loop.call_later(self.interval, self._sweep, loop)


class ConnectionSocket:
    """``self.request`` of an async handler: a restricted view of the connection's socket.

    The event loop's transport owns the socket, so reading or writing it
    directly would steal bytes from under the stream: those methods are not
    there (``AttributeError`` naming ``self.reader``/``self.writer``). What does not
    disturb the transport works: ``getpeername``, ``getsockname``,
    ``getsockopt``/``setsockopt``, ``fileno``, ``family``, ``type``, and
    ``shutdown`` (a drain's deadline uses it to end blocked peers).
    """

    __slots__ = ("_sock", "stream")

    def __init__(self, sock: socket.socket, stream: Stream | None = None) -> None:
        self._sock = sock
        self.stream = stream

    @property
    def family(self) -> int:
        return self._sock.family

    @property
    def type(self) -> int:
        return self._sock.type

    def fileno(self) -> int:
        return self._sock.fileno()

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def getsockopt(self, *args: Any) -> Any:
        return self._sock.getsockopt(*args)

    def setsockopt(self, *args: Any) -> None:
        self._sock.setsockopt(*args)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def __getattr__(self, name: str) -> Any:
        # AttributeError (so hasattr() and getattr(..., default) keep working), with why.
        raise AttributeError(
            f"the event loop's transport owns this socket: {name!r} is not available on "
            "an async handler's request (read with self.reader, write with self.writer)"
        )

    def __repr__(self) -> str:
        return f"<ConnectionSocket {self._sock!r}>"


class Stream(asyncio.Protocol):
    """A connection's protocol, reader and writer in one object (see the module doc)."""

    __slots__ = (
        "_buffer",
        "_chunk",
        "_closed_waiter",
        "_eof",
        "_exception",
        "_limit",
        "_loop",
        "_lost",
        "_max_line",
        "_paused_reading",
        "_paused_writing",
        "_sweep",
        "_waiter",
        "_waiting_since_tick",
        "_write_backlog",
        "byte_counts",
        "record_bytes",
        "timed_out",
        "transport",
    )

    def __init__(
        self,
        sweep: IdleSweep,
        *,
        max_line: int | None,
        limit: int = DEFAULT_LIMIT,
        record_bytes: bool = False,
    ):
        self._sweep = sweep
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Read the kernel's byte counts before closing (for the access log).
        self.record_bytes = record_bytes
        #: Unread bytes, when more than one chunk is waiting (else ``_chunk``).
        self._buffer: bytearray | None = None
        #: The one chunk received and not read yet (no copy made).
        self._chunk: bytes | None = None
        self._eof = False
        self._lost = False
        self._exception: BaseException | None = None
        self._limit = limit
        self._max_line = max_line or limit
        self._paused_reading = False
        self._paused_writing = False
        #: The Future a read or a drain waits on, if any.
        self._waiter: asyncio.Future[None] | None = None
        #: Sweep tick at which the current wait began or last saw progress.
        self._waiting_since_tick = NOT_WAITING
        self._write_backlog = -1
        self._closed_waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        #: (bytes received, bytes sent) read from the kernel just before closing.
        self.byte_counts: tuple[int, int] | None = None
        #: Set when idle_timeout ended a wait.
        self.timed_out = False

    # -- protocol callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self._chunk is None and self._buffer is None:
            self._chunk = data
            waiter = self._waiter  # _wake(), inlined: this runs for every chunk
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)
            return
        if self._buffer is None:
            self._buffer = bytearray(self._chunk or b"")
            self._chunk = None
        self._buffer += data
        if len(self._buffer) > 2 * self._limit and not self._paused_reading:
            self._paused_reading = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Keep the transport open: the handler may still write (half-close).
        # Not over TLS, which has no half-close: the TLS transports log a
        # warning for every connection whose protocol asks for one.
        transport = self.transport
        return transport is None or transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        # A reset: the socket is still open (asyncio closes it after this
        # call), so the access log can still say how much went out.
        self._note_byte_counts()
        self._lost = True
        self._eof = True
        if exc is not None and self._exception is None:
            self._exception = exc
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                if self._paused_writing or exc is not None:
                    waiter.set_exception(exc or ConnectionResetError("Connection lost"))
                else:
                    waiter.set_result(None)
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._write_backlog >= 0:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        """Wait for the next event (data, end of stream, room to write), under idle_timeout."""
        if self._waiter is not None:
            raise RuntimeError("another coroutine is already waiting on this stream")
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        self._waiting_since_tick = self._sweep.tick
        try:
            await waiter
        finally:
            self._waiter = None
            self._waiting_since_tick = NOT_WAITING

    def _check_idle(self, tick: int) -> None:
        """Sweep: the current wait saw no progress for ``idle_timeout``: time it out."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        error = TimeoutError("the connection was idle too long")
        if self._write_backlog >= 0:
            transport = self.transport
            assert transport is not None
            left = transport.get_write_buffer_size()
            if left < self._write_backlog:  # bytes went out: progress, not idleness
                self._write_backlog = left
                self._waiting_since_tick = tick
                return
            # The data cannot go out: nothing is left to do with this connection.
            # Every later write or drain raises this same TimeoutError (not a
            # silent drop, nor the loop's own RuntimeError for a closed
            # transport), so the handler cannot mistake it for success; the
            # byte counts are read first, while the socket is still open.
            self._exception = error
            self._note_byte_counts()
            transport.abort()
        self.timed_out = True
        self._waiter = None
        waiter.set_exception(error)

    # -- reading ----------------------------------------------------------------------

    def _buffered(self) -> int:
        if self._chunk is not None:
            return len(self._chunk)
        return len(self._buffer) if self._buffer is not None else 0

    def _take(self, n: int) -> bytes:
        """Take up to ``n`` buffered bytes (n < 0: all of them)."""
        chunk = self._chunk
        if chunk is not None:
            if n < 0 or n >= len(chunk):
                self._chunk = None
                return chunk
            self._chunk = chunk[n:]
            return chunk[:n]
        buffer = self._buffer
        if buffer is None:
            return b""
        if n < 0 or n >= len(buffer):
            data = bytes(buffer)
            self._buffer = None
        else:
            data = bytes(buffer[:n])
            del buffer[:n]
        self._maybe_resume_reading()
        return data

    def _maybe_resume_reading(self) -> None:
        if self._paused_reading and self._buffered() <= self._limit:
            self._paused_reading = False
            assert self.transport is not None
            self.transport.resume_reading()

    async def _fill(self) -> None:
        """Wait for more data (raises what ended the connection, if it did)."""
        if self._exception is not None:
            raise self._exception
        await self._wait()

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``n < 0``: until the end of the stream); b"" at the end."""
        if n > 0:
            # The hot path of an echo: a chunk waits, or the one wait is inlined
            # (no helper coroutine per read).
            while True:
                chunk = self._chunk
                if chunk is not None:
                    if n >= len(chunk):
                        self._chunk = None
                        return chunk
                    self._chunk = chunk[n:]
                    return chunk[:n]
                if self._buffer is not None:
                    return self._take(n)
                if self._eof:
                    return b""
                if self._exception is not None:
                    raise self._exception
                if self._waiter is not None:
                    raise RuntimeError("another coroutine is already waiting on this stream")
                assert self._loop is not None
                waiter: asyncio.Future[None] = self._loop.create_future()
                self._waiter = waiter
                self._waiting_since_tick = self._sweep.tick
                try:
                    await waiter
                finally:
                    self._waiter = None
                    self._waiting_since_tick = NOT_WAITING
        if n == 0:
            return b""
        while not self._eof:
            await self._fill()
        return self._take(-1)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``IncompleteReadError`` if the stream ends first."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        while self._buffered() < n:
            if self._eof:
                partial = self._take(-1)
                raise asyncio.IncompleteReadError(partial, n)
            await self._fill()
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Data up to and including ``separator``.

        ``IncompleteReadError`` at the end of the stream (with what was read);
        ``LimitOverrunError`` once ``max_line`` bytes have come without it.
        """
        if not separator:
            raise ValueError("Separator should be at least one-byte string")
        limit = self._max_line
        start = 0
        while True:
            data: bytes | bytearray = (
                self._chunk if self._chunk is not None else (self._buffer or b"")
            )
            found = data.find(separator, start)
            if found >= 0:
                end = found + len(separator)
                if end > limit:
                    raise asyncio.LimitOverrunError(
                        "Separator is found, but chunk is longer than limit", found
                    )
                return self._take(end)
            if len(data) > limit:
                raise asyncio.LimitOverrunError(
                    "Separator is not found, and chunk exceed the limit", len(data)
                )
            start = max(0, len(data) - len(separator) + 1)
            if self._eof:
                raise asyncio.IncompleteReadError(self._take(-1), None)
            await self._fill()

    async def readline(self) -> bytes:
        """One line, ``\\n`` included (shorter at the end of the stream).

        A line longer than ``max_line`` (terminator included) raises
        :class:`~sockserve.errors.LineTooLong`; what was read of it is dropped.
        """
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError:
            self._take(-1)
            raise LineTooLong(self._max_line) from None

    def at_eof(self) -> bool:
        """True once the stream ended and every byte was read."""
        return self._eof and self._chunk is None and self._buffer is None

    def exception(self) -> BaseException | None:
        return self._exception

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing ----------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending; raise at once if the connection was cut.

        After a reset or an idle_timeout cut the data has nowhere to go:
        the error that ended the connection (``ConnectionResetError`` if none
        was given) is raised, where asyncio's transports would drop the data
        silently and uvloop's raise a ``RuntimeError``.
        """
        if self._lost or self._exception is not None:
            self._raise_cut()
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        if self._lost or self._exception is not None:
            self._raise_cut()
        assert self.transport is not None
        self.transport.writelines(data)

    def write_eof(self) -> None:
        if self._lost or self._exception is not None:
            self._raise_cut()
        assert self.transport is not None
        self.transport.write_eof()

    def _raise_cut(self) -> None:
        """Raise what ended the connection (see ``write``)."""
        raise self._exception or ConnectionResetError("Connection lost")

    def can_write_eof(self) -> bool:
        assert self.transport is not None
        return self.transport.can_write_eof()

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark.

        Returns at once when it already is (no suspension). Raises the error
        that ended the connection, ``ConnectionResetError`` if it is gone, and
        ``TimeoutError`` (aborting the connection) if nothing could be sent
        for ``idle_timeout``.
        """
        transport = self.transport
        if (
            not self._paused_writing
            and not self._lost
            and self._exception is None
            and transport is not None
            and not transport.is_closing()
        ):
            return  # below the high-water mark: nothing to wait for
        if self._exception is not None:
            raise self._exception
        if self._lost:
            raise ConnectionResetError("Connection lost")
        assert transport is not None
        if transport.is_closing():
            # The transport failed (or is being closed): let its connection_lost
            # run, so a handler writing in a loop learns the client is gone
            # instead of spinning without ever giving the loop a turn.
            await asyncio.sleep(0)
            if self._lost:
                raise self._exception or ConnectionResetError("Connection lost")
        while self._paused_writing:
            self._write_backlog = transport.get_write_buffer_size()
            try:
                await self._wait()
            finally:
                self._write_backlog = -1
            if self._lost:
                raise self._exception or ConnectionResetError("Connection lost")

    def close(self) -> None:
        """Close the connection once what was written has been sent."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._note_byte_counts()
            transport.close()

    def abort(self) -> None:
        """Close the connection at once, dropping unsent data (a drain's deadline)."""
        transport = self.transport
        if transport is not None:
            self._note_byte_counts()
            transport.abort()

    def _note_byte_counts(self) -> None:
        if self.record_bytes and self.byte_counts is None and self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                self.byte_counts = tcp_byte_counts(sock)

    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    async def wait_closed(self) -> None:
        if self._lost:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await self._closed_waiter

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)

    async def start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
    ) -> None:
        """Upgrade the connection to TLS (STARTTLS), as the server side.

        What was written is sent first, in the clear. Bytes the client sent
        after its command and before the handshake, not read yet, are
        discarded: read after the upgrade they would pass for bytes that came
        encrypted (the STARTTLS command-injection attack, RFC 3207 section
        4.2). A failed handshake is the peer's: a ``TLSHandshakeError`` (a
        ``PeerError``) or, past ``ssl_handshake_timeout``, a ``TimeoutError``;
        both are counted in ``stats().step_failures`` as ``tls:KIND``.
        """
        assert self.transport is not None
        await self.drain()
        self._chunk = self._buffer = None
        loop = asyncio.get_running_loop()
        try:
            new_transport = await loop.start_tls(
                self.transport,
                self,
                record_server_names(sslcontext),
                server_side=True,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
            )
        except (ssl.SSLError, OSError) as exc:
            raise loop_handshake_failure(exc, ssl_handshake_timeout) from None
        self.transport = cast(asyncio.Transport, new_transport)
