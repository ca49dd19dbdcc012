"""``AsyncMixIn``: serve :class:`~sockserve.AsyncStreamRequestHandler` handlers on an event loop.

The serving loop is the one every sockserve server has: it accepts, applies
``max_connections``/``max_connections_per_ip``, ``verify_request`` and the
access log, and counts what happens. Each admitted connection then goes to
one event loop thread (uvloop when installed) as a task, instead of a thread
or a process. A connection that waits costs a coroutine and a descriptor, so
thousands of clients are all served at once, where a thread pool serves
``max_workers`` of them and a thread per client starves new ones of the GIL.

Drain, ``stats()``, limits and the runner work as for the other strategies:
at a drain's deadline the connections are shut down and their tasks
cancelled. Stream sockets only: datagram servers keep the thread pool.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, cast

from sockserve._types import Address, Request
from sockserve.engine.connection import ABORTED, DENIED, Connection
from sockserve.engine.pipeline import ConnectionPipeline
from sockserve.engine.prepare import Step, prepare_async
from sockserve.observability.access import tcp_byte_counts
from sockserve.options import family_default
from sockserve.security import tls_context_of
from sockserve.security.tls import TLSInfo
from sockserve.servers import (
    MixInBase,
    TCPServer,
    UDPServer,
    UnixDatagramServer,
    UnixStreamServer,
)
from sockserve.strategies.aio import AsyncStrategy
from sockserve.strategies.aiostream import ConnectionSocket
from sockserve.strategies.base import Strategy

__all__ = [
    "AsyncMixIn",
    "AsyncTCPServer",
    "AsyncUDPServer",
    "AsyncUnixDatagramServer",
    "AsyncUnixStreamServer",
]


class AsyncMixIn(MixInBase):
    """Handle each connection as a task on one event loop thread (see the module doc)."""

    #: "auto" (uvloop when installed), "asyncio" or "uvloop".
    event_loop: str = family_default("event_loop", "async")
    #: ``server_close`` waits for the connections being served to end.
    block_on_close: bool = True

    _serves_async_handlers = True
    _closed_for_good: str | None = (
        "server_close() stopped its event loop: create a new server to serve again"
    )
    _tasks: AsyncStrategy
    _datagram = False

    #: What runs the handler when a subclass overrides ``finish_request_async``
    #: (or, deprecated, ``finish_request`` as a coroutine); None: the
    #: connection's coroutine runs it itself (one coroutine frame less).
    _handler_hook: Callable[..., Awaitable[None]] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "finish_request_async" in cls.__dict__:
            cls._handler_hook = cls.__dict__["finish_request_async"]
        override = cls.__dict__.get("finish_request")
        if inspect.iscoroutinefunction(override):
            warnings.warn(
                f"{cls.__name__} overrides finish_request with a coroutine; "
                "override finish_request_async instead (the coroutine form of "
                "finish_request will stop working in a future release)",
                DeprecationWarning,
                stacklevel=2,
            )
            cls._handler_hook = override

    def _make_strategy(self, pipeline: ConnectionPipeline) -> Strategy:
        self._datagram = getattr(self, "socket_type", socket.SOCK_STREAM) == socket.SOCK_DGRAM
        handler = self.RequestHandlerClass
        wants = getattr(handler, "_async_transport", "stream")
        serves = "datagram" if self._datagram else "stream"
        if wants != serves:
            raise TypeError(
                f"{type(self).__name__} serves {serves} sockets; "
                f"{getattr(handler, '__name__', handler)} is an async {wants} handler"
            )
        handler_max_line = getattr(handler, "max_line", None)
        self._tasks = AsyncStrategy(
            self._serve_connection,
            pipeline.tracker,
            kind=self.event_loop,
            idle_timeout=self.idle_timeout,
            max_line=handler_max_line if handler_max_line is not None else self.max_line,
            datagram=self._datagram,
        )
        return self._tasks

    def _blocks_on_close(self) -> bool:
        return self.block_on_close

    def _run_serving_loop(self, poll_interval: float | None) -> None:
        """The event loop accepts and serves, on this thread, until ``shutdown()``."""
        self._tasks.run_serving_loop(self, poll_interval)

    def _listener_timeout(self) -> float | None:
        timeout = super()._listener_timeout()
        return None if timeout == 0.0 else timeout  # non-blocking for the loop: no timeout

    def handle_request(self) -> None:
        """Wait for one connection (as the stdlib does) and run the loop until it is served."""
        super().handle_request()
        self._tasks.wait_idle(None)

    @property
    def event_loop_kind(self) -> str:
        """The event loop really used: "uvloop" or "asyncio"."""
        return self._tasks.kind

    def get_request(self) -> tuple[Any, Address]:
        """Accept a connection; the request is the view handlers get (see ConnectionSocket)."""
        if self._datagram:
            return super().get_request()
        sock, client_address = super().get_request()
        return ConnectionSocket(sock), client_address

    def process_request(self, request: Request, client_address: Address) -> None:
        """Start the connection's task on the event loop."""
        pipeline = self._pipeline
        pipeline.submit(pipeline.connection_for(request, client_address))

    async def _serve_connection(self, conn: Connection) -> None:
        """The life of one connection on the loop: its stream, the handler, errors, the end."""
        pipeline = self._pipeline
        try:
            if conn.verify_pending:
                # Pre-handler steps, as coroutines on the raw socket (before a
                # transport takes it), then verify_request.
                await prepare_async(conn, self._raw_socket(conn), pipeline.steps)
                conn.verify_pending = False
                if not self.verify_request(conn.request, conn.client_address):
                    conn.end_as(DENIED)
                    return
            if not self._datagram:
                await self._tasks.open_stream(
                    conn,
                    record_bytes=self.access_log or pipeline.recorder is not None,
                    tls=tls_context_of(self),
                    handshake_timeout=self.handshake_timeout,
                )
            request, client_address = conn.request, conn.client_address
            hook = type(self)._handler_hook
            if hook is not None:
                await hook(self, request, client_address)
            else:
                # finish_request_async's own work, done here: one coroutine frame
                # less per connection (memory, at 10,000 idle connections).
                handler: Any = self.RequestHandlerClass(request, client_address, self)
                try:
                    await handler.setup()
                    try:
                        await handler.handle()
                    finally:
                        await handler.finish()
                except Exception as exc:
                    cause = _idle_timeout_cause(request, exc)
                    if cause is None:
                        raise
                    raise cause from exc
        except asyncio.CancelledError:
            # Aborted at a drain's deadline (or by server_close).
            conn.end_as(ABORTED)
        except Exception:
            pipeline.failed(conn)
        finally:
            pipeline.end(conn)

    def _tls_info(self, conn: Connection) -> Any:
        request = conn.request
        stream = request.stream if isinstance(request, ConnectionSocket) else None
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        return TLSInfo.of(ssl_object) if ssl_object is not None else None

    def _raw_socket(self, conn: Connection) -> socket.socket:
        """The socket whose readiness the pre-handler steps wait on."""
        request = conn.request
        if isinstance(request, ConnectionSocket):
            return request._sock
        if isinstance(request, tuple):  # a datagram: (packet, the server's socket)
            sock: socket.socket = request[1]
            return sock
        return cast(socket.socket, request)

    def _pre_handler_steps(self) -> list[Step]:
        # TLS is the event loop's own (connect_accepted_socket(ssl=...)): not a step here.
        return [step for step in super()._pre_handler_steps() if step.kind != "tls"]

    async def finish_request_async(self, request: Request, client_address: Address) -> None:
        """Run the handler: await its setup, handle and finish (``finish_request``, async).

        Override it as you would ``finish_request``, to give the handler extra
        arguments; it runs on the event loop.
        """
        handler: Any = self.RequestHandlerClass(request, client_address, self)
        try:
            await _run_handler(handler)
        except Exception as exc:
            cause = _idle_timeout_cause(request, exc)
            if cause is not None:
                raise cause from exc
            raise

    def shutdown_request(self, request: Request) -> None:
        """Log the connection (while its socket is still open) and close it."""
        if self._datagram:
            super().shutdown_request(request)  # a datagram: nothing of its own to close
            return
        if self.access_log or self._pipeline.recorder is not None:
            stream = request.stream if isinstance(request, ConnectionSocket) else None
            counts = stream.byte_counts if stream is not None else None
            if counts is None and stream is not None:
                # Read once, here, for the log and the metrics; closing the stream
                # then finds them read and does not ask the kernel again.
                counts = stream.byte_counts = tcp_byte_counts(request)
            self._pipeline.ending(request, counts)
        self.close_request(request)

    def close_request(self, request: Request) -> None:
        """Close the connection: its transport, once what was written has been sent."""
        if self._datagram:
            return  # the socket is shared by every datagram
        if isinstance(request, ConnectionSocket) and request.stream is not None:
            stream = request.stream
            if stream.timed_out:
                stream.abort()  # what it holds cannot go out: do not wait for it
            else:
                stream.close()
        elif isinstance(request, ConnectionSocket):
            request._sock.close()  # the stream never opened: the accepted socket is still ours
        else:
            request.close()


async def _run_handler(handler: Any) -> None:
    """setup, handle, finish: what the stdlib's handler constructor does, awaited."""
    await handler.setup()
    try:
        await handler.handle()
    finally:
        await handler.finish()


def _idle_timeout_cause(request: Any, exc: BaseException) -> TimeoutError | None:
    """The TimeoutError to raise instead of ``exc`` when idle_timeout ended the connection.

    idle_timeout ended a wait; what the handler saw next (a reset, an
    incomplete read) is a consequence of that, and it counts as a timeout.
    """
    stream = request.stream if isinstance(request, ConnectionSocket) else None
    if stream is not None and stream.timed_out and not isinstance(exc, TimeoutError):
        return TimeoutError("the connection was idle too long")
    return None


class _AsyncStreamDefaults:
    """Limits for async servers: many connections are the point, idle ones still end."""

    max_connections: int | None = family_default("max_connections", "async")
    idle_timeout: float | None = family_default("idle_timeout", "async")
    max_line: int | None = family_default("max_line", "async")
    tcp_nodelay: bool = family_default("tcp_nodelay", "async")


class AsyncTCPServer(_AsyncStreamDefaults, AsyncMixIn, TCPServer):
    """A TCP server for :class:`~sockserve.AsyncStreamRequestHandler` handlers."""


class AsyncUDPServer(AsyncMixIn, UDPServer):
    """A UDP server for :class:`~sockserve.AsyncDatagramRequestHandler` handlers."""


class AsyncUnixDatagramServer(AsyncMixIn, UnixDatagramServer):
    """A Unix datagram server for :class:`~sockserve.AsyncDatagramRequestHandler` handlers."""


class AsyncUnixStreamServer(_AsyncStreamDefaults, AsyncMixIn, UnixStreamServer):
    """A Unix stream server for :class:`~sockserve.AsyncStreamRequestHandler` handlers."""
