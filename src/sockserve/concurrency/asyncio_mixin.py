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
import socket
from typing import Any

from sockserve._types import Address
from sockserve.concurrency.eventloop import EventLoopThread
from sockserve.servers import TCPServer, UnixStreamServer

__all__ = ["AsyncMixIn", "AsyncTCPServer", "AsyncUnixStreamServer"]


class AsyncMixIn:
    """Handle each connection as a task on one event loop thread (see the module doc)."""

    #: "auto" (uvloop when installed), "asyncio" or "uvloop".
    event_loop: str = "auto"
    #: ``server_close`` waits for the connections being served to end.
    block_on_close: bool = True

    _dispatches_in_background = True
    _closed_for_good: str | None = (
        "server_close() stopped its event loop thread: create a new server to serve again"
    )
    _serves_async_handlers = True
    _loop_thread: EventLoopThread

    def _setup_strategy(self) -> None:
        handler = self.RequestHandlerClass  # type: ignore[attr-defined]
        if not getattr(handler, "_is_async_handler", False):
            raise TypeError(
                f"{type(self).__name__} serves AsyncStreamRequestHandler subclasses; "
                f"{getattr(handler, '__name__', handler)!r} is not one (use a thread pool "
                "server such as ThreadPoolTCPServer for it)"
            )
        if getattr(self, "socket_type", socket.SOCK_STREAM) != socket.SOCK_STREAM:
            raise TypeError(f"{type(self).__name__}: async handlers serve stream sockets only")
        self._loop_thread = EventLoopThread(
            name=f"sockserve-{type(self).__name__}-loop", kind=self.event_loop
        )

    @property
    def event_loop_kind(self) -> str:
        """The event loop really used: "uvloop" or "asyncio"."""
        return self._loop_thread.kind

    def process_request(self, request: Any, client_address: Address) -> None:
        """Hand the connection to the event loop thread."""
        self._loop_thread.submit(self._serve_connection, request, client_address)

    async def _serve_connection(self, request: Any, client_address: Address) -> None:
        """The life of one connection on the loop: handler, errors, end, release."""
        server: Any = self
        try:
            await self.finish_request(request, client_address)
        except asyncio.CancelledError:
            # Aborted at a drain's deadline (or by server_close): the drain's
            # report counts it as forced; the access log says so.
            if server.access_log:
                server._outcomes[id(request)] = "aborted"
        except Exception:
            server._request_failed(request, client_address)
        finally:
            server._end_request(request)

    async def finish_request(self, request: Any, client_address: Address) -> None:
        """Run the handler: setup, handle, finish (the async form of the stdlib hook).

        Override it as a coroutine, as you would ``finish_request`` to give the
        handler extra arguments.
        """
        handler = self.RequestHandlerClass(request, client_address, self)  # type: ignore[attr-defined]
        try:
            await handler._run()
        except Exception as exc:
            if getattr(handler, "timed_out", False) and not isinstance(exc, TimeoutError):
                # The idle watchdog dropped the connection; what the handler saw
                # (a reset, an incomplete read) is a consequence of that.
                raise TimeoutError("timed out: the connection was idle too long") from exc
            raise

    def _worker_counts(self) -> tuple[int, int, int]:
        tasks = self._loop_thread.running_tasks
        return tasks, tasks, 0

    def _abort_requests(self) -> None:
        """Drain deadline: shut the sockets down (reads end), then cancel the handlers."""
        super()._abort_requests()  # type: ignore[misc]
        self._loop_thread.cancel_all()

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        if self.block_on_close:
            tracker = self._tracker  # type: ignore[attr-defined]
            tracker.wait_until(lambda: tracker.in_flight == 0, None)
        self._loop_thread.stop()


class _AsyncStreamDefaults:
    """Limits for async servers: many connections are the point, idle ones still end."""

    max_connections: int | None = 10000
    idle_timeout: float | None = 300.0
    max_line: int | None = 65536
    tcp_nodelay: bool = True


# finish_request is a coroutine here: the async form of the hook, on purpose.
class AsyncTCPServer(_AsyncStreamDefaults, AsyncMixIn, TCPServer):  # type: ignore[misc]
    """A TCP server for :class:`~sockserve.AsyncStreamRequestHandler` handlers."""


class AsyncUnixStreamServer(_AsyncStreamDefaults, AsyncMixIn, UnixStreamServer):  # type: ignore[misc]
    """A Unix stream server for :class:`~sockserve.AsyncStreamRequestHandler` handlers."""
