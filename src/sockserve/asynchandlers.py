"""``AsyncStreamRequestHandler``: the StreamRequestHandler idea, with coroutines.

For many thousands of mostly idle connections a thread each is too much; an
async handler costs a coroutine. The shape is the one socketserver users
know: ``setup()``, ``handle()`` and ``finish()`` (now ``async``), with
``self.request``, ``self.client_address`` and ``self.server``, plus
``self.reader`` and ``self.writer``, which keep the asyncio stream API::

    class Echo(sockserve.AsyncStreamRequestHandler):
        async def handle(self):
            while line := await self.reader.readline():
                self.writer.write(line)
                await self.writer.drain()

Served by :class:`sockserve.AsyncTCPServer` (or ``sockserve run`` with such a
handler), which gives it the same limits as the other servers:

* ``max_line`` bounds ``reader.readline()``: a longer line raises
  :class:`~sockserve.errors.LineTooLong` (the handler's attribute, else the
  server's, else 64 KiB);
* ``idle_timeout``: a read or ``drain()`` that waits that long with no byte
  moving raises ``TimeoutError``;
* a drain sets ``server.draining`` and, at its deadline, cancels the handler.

``self.reader`` and ``self.writer`` are one object, the connection's
:class:`~sockserve.strategies.aiostream.Stream` (one object instead of
asyncio's three is part of what makes a connection cheap). ``self.request``
is a restricted view of the socket, whose transport owns it: ``getpeername``,
``getsockopt`` and the like work; ``recv`` and ``send`` do not (use the
streams). The server closes the connection after ``finish()``, once what was
written has been sent.
"""

from __future__ import annotations

import io
import socket as socketlib
import ssl
from typing import TYPE_CHECKING, Any

from sockserve._types import Address
from sockserve.strategies.aiostream import ConnectionSocket, Stream

if TYPE_CHECKING:
    from sockserve.servers import BaseServer

__all__ = ["AsyncDatagramRequestHandler", "AsyncStreamRequestHandler"]


class AsyncStreamRequestHandler:
    """Serves one connection with coroutines; override ``handle`` (see the module doc)."""

    #: Longest line ``reader.readline()`` returns; None: the server's ``max_line``.
    max_line: int | None = None

    #: Marks the class for servers, which refuse handlers they cannot run.
    _is_async_handler = True
    _async_transport = "stream"

    # Slots for what every handler has: a subclass that adds attributes still
    # gets a __dict__, but one holding only its own (memory per connection).
    __slots__ = ("client_address", "reader", "request", "server", "writer")

    reader: Stream
    writer: Stream

    def __init__(
        self, request: ConnectionSocket, client_address: Address, server: BaseServer
    ) -> None:
        self.request = request
        self.client_address = client_address
        self.server = server

    @property
    def timed_out(self) -> bool:
        """Whether ``idle_timeout`` ended one of this connection's waits."""
        stream = self.request.stream
        return stream is not None and stream.timed_out

    async def setup(self) -> None:
        """Give the handler its streams (runs first)."""
        stream = self.request.stream
        if stream is None:
            raise RuntimeError("the connection has no stream: is this an async server?")
        self.reader = stream
        self.writer = stream

    async def handle(self) -> None:
        """Serve the connection."""

    async def start_tls(self, context: ssl.SSLContext | None = None) -> None:
        """Upgrade this plain connection to TLS, as the server side (STARTTLS).

        ``await self.writer.start_tls(context, ssl_handshake_timeout=...)``
        with the server's defaults: ``context`` defaults to the server's
        ``ssl_context`` and the handshake is bounded by its
        ``handshake_timeout``. The reader and writer stay the same objects;
        unread bytes the client sent before the handshake are discarded, and
        a failed handshake is the peer's (see ``Stream.start_tls``).
        """
        server: Any = self.server
        if context is None:
            context = getattr(server, "ssl_context", None)
            if context is None:
                raise ValueError("start_tls() needs a context: the server has no ssl_context")
        if self.writer.get_extra_info("ssl_object") is not None:
            raise RuntimeError("start_tls(): the connection is TLS already")
        await self.writer.start_tls(
            context, ssl_handshake_timeout=getattr(server, "handshake_timeout", None)
        )

    async def finish(self) -> None:
        """Flush what was written (runs last, also after ``handle`` raised).

        The server closes the connection afterwards.
        """
        writer = getattr(self, "writer", None)
        if writer is None or writer.is_closing():
            return
        try:
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client is gone or stopped reading: nothing left to flush to

    async def _run(self) -> None:
        """setup, handle, finish: what the stdlib's handler constructor does, awaited."""
        await self.setup()
        try:
            await self.handle()
        finally:
            await self.finish()


class AsyncDatagramRequestHandler:
    """Answers one datagram with coroutines: ``DatagramRequestHandler``'s shape, async.

    ``self.packet`` is the datagram, ``self.client_address`` its sender,
    ``self.socket`` the server's socket. Answer with ``self.reply(data)`` (one
    datagram, sent at once), or write to ``self.wfile`` as with the stdlib
    handler: what it holds is sent when ``finish()`` runs. Served by
    :class:`sockserve.AsyncUDPServer` and ``AsyncUnixDatagramServer`` on their
    event loop. A handler that does not wait for anything (most: a reply is a
    ``sendto``) runs straight through when its datagram arrives, with no task
    made for it; one that waits becomes a task at its first wait.
    """

    _is_async_handler = True
    _async_transport = "datagram"

    packet: bytes
    socket: socketlib.socket

    def __init__(
        self, request: tuple[bytes, socketlib.socket], client_address: Address, server: BaseServer
    ):
        self.request = request
        self.client_address = client_address
        self.server = server
        self._wfile: io.BytesIO | None = None

    @property
    def rfile(self) -> io.BytesIO:
        """The datagram as a file (made when first asked for)."""
        return io.BytesIO(self.packet)

    @property
    def wfile(self) -> io.BytesIO:
        """Write the reply here; ``finish()`` sends it as one datagram."""
        if self._wfile is None:
            self._wfile = io.BytesIO()
        return self._wfile

    def reply(self, data: bytes) -> bool:
        """Send ``data`` to the client as one datagram; False if the socket's buffer was full.

        A full send buffer drops the reply, as a congested network would a
        datagram: UDP clients retry.
        """
        try:
            self.socket.sendto(data, self.client_address)
        except BlockingIOError:
            return False
        return True

    async def setup(self) -> None:
        self.packet, self.socket = self.request

    async def handle(self) -> None:
        """Answer the datagram."""

    async def finish(self) -> None:
        """Send what was written to ``wfile`` (if it was used: even nothing, as the stdlib does)."""
        if self._wfile is not None:
            self.reply(self._wfile.getvalue())

    async def _run(self) -> None:
        await self.setup()
        try:
            await self.handle()
        finally:
            await self.finish()
