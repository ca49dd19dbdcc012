"""Request handlers: the objects that talk to one client (or answer one datagram).

The contract is the stdlib's: the server calls ``Handler(request,
client_address, server)``; the constructor runs ``setup()``, ``handle()`` and,
even when ``handle`` raises, ``finish()``.
"""

from __future__ import annotations

import io
import socket
import ssl
from typing import TYPE_CHECKING, Any

from sockserve._types import Address, Request
from sockserve.core.reader import open_bounded_reader

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from sockserve.servers import BaseServer

#: ``start_tls()``'s handshake bound when the server has no ``handshake_timeout``.
_HANDSHAKE_TIMEOUT = 10.0

__all__ = [
    "BaseRequestHandler",
    "DatagramRequestHandler",
    "StreamRequestHandler",
]


class BaseRequestHandler:
    """Holds the request, the client address and the server; override ``handle``."""

    #: True for protocols where the server speaks first (a greeting, a banner:
    #: daytime, chargen, SMTP): the pool then hands the connection to a worker
    #: at once instead of waiting for the client's first bytes (see
    #: ``ThreadPoolMixIn.dispatch``). The stdlib has no such attribute; it
    #: changes nothing elsewhere.
    speaks_first: bool = False

    def __init__(self, request: Request, client_address: Address, server: BaseServer) -> None:
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        """Prepare for ``handle`` (runs first)."""

    def handle(self) -> None:
        """Serve the request."""

    def finish(self) -> None:
        """Clean up (runs last, also after an exception in ``handle``)."""


class _SocketWriter(io.BufferedIOBase):
    """An unbuffered file-like writer: every ``write`` is one ``sendall``.

    ``socket.makefile('wb', 0)`` would return a raw ``SocketIO`` whose ``write``
    may send only part of the data; callers of ``wfile.write`` never check, so
    this writer always sends everything before returning.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer, /) -> int:
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


class StreamRequestHandler(BaseRequestHandler):
    """A handler for stream sockets with ``rfile``/``wfile`` file objects.

    Class attributes (same meaning as in the stdlib): ``rbufsize`` (-1: the
    default buffer), ``wbufsize`` (0: unbuffered, every write is sent at once),
    ``timeout`` (socket timeout in seconds, None for none) and
    ``disable_nagle_algorithm`` (set TCP_NODELAY).

    sockserve adds ``max_line``: the longest line (bytes, terminator included)
    that ``rfile.readline()`` without a size returns; a longer one raises
    :class:`~sockserve.errors.LineTooLong` instead of buffering without end.
    None (the default) takes the server's ``max_line``, which is None (no
    bound) for the stdlib-named servers.
    """

    rbufsize: int = -1
    wbufsize: int = 0
    timeout: float | None = None
    disable_nagle_algorithm: bool = False
    max_line: int | None = None

    connection: socket.socket
    rfile: Any
    wfile: Any

    def setup(self) -> None:
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self._open_files()

    def _open_files(self) -> None:
        """``rfile`` and ``wfile`` on ``self.connection`` (again after ``start_tls``)."""
        max_line = self.max_line
        if max_line is None:
            max_line = getattr(self.server, "max_line", None)
        if max_line is None:
            self.rfile = self.connection.makefile("rb", self.rbufsize)
        else:
            self.rfile = open_bounded_reader(self.connection, self.rbufsize, max_line)
        if self.wbufsize == 0:
            self.wfile = _SocketWriter(self.connection)
        else:
            self.wfile = self.connection.makefile("wb", self.wbufsize)

    def start_tls(self, context: ssl.SSLContext | None = None) -> None:
        """Upgrade this plain connection to TLS, as the server side (STARTTLS).

        Call it once the protocol has agreed to upgrade (the client asked,
        the handler answered "go ahead")::

            if self.rfile.readline() == b"STARTTLS\\r\\n":
                self.wfile.write(b"220 go ahead\\r\\n")
                self.start_tls(context)

        What ``wfile`` holds is sent first, in the clear; then the handshake
        runs on this thread, bounded as a whole by the server's
        ``handshake_timeout``. Bytes the client sent after its command,
        before the handshake, are discarded with the old ``rfile``: read
        afterwards they would pass for bytes that came encrypted (the
        STARTTLS command-injection attack, RFC 3207 section 4.2).

        Afterwards ``self.request`` and ``self.connection`` are the
        ``SSLSocket``, ``rfile`` and ``wfile`` are new (``max_line`` still
        bounds ``readline()``), ``server.connection_info(self.request).tls``
        describes the session, and the server ends the connection with a
        ``close_notify``. ``context`` defaults to the server's
        ``ssl_context`` (give it explicitly when the server serves plain
        connections: with ``ssl_context`` set, every connection is TLS from
        its first byte).

        Raises ``ValueError`` without a context, ``RuntimeError`` on a
        connection that is TLS already; a failed handshake raises
        :class:`~sockserve.security.tls.TLSHandshakeError` (a
        :class:`~sockserve.errors.PeerError`: the connection ends as the
        peer's fault) and one that takes too long a ``TimeoutError``; both
        are counted in ``stats().step_failures`` as ``tls:KIND``.
        """
        from sockserve.security.tls import upgrade  # noqa: PLC0415 - ssl machinery on demand

        server: Any = self.server
        if context is None:
            context = getattr(server, "ssl_context", None)
            if context is None:
                raise ValueError("start_tls() needs a context: the server has no ssl_context")
        old = self.connection
        if isinstance(old, ssl.SSLSocket):
            raise RuntimeError("start_tls(): the connection is TLS already")
        pipeline = getattr(server, "_pipeline", None)
        # Looked up before wrapping: wrapping detaches the old socket object.
        tracked = pipeline.tracker.find(old) if pipeline is not None else None
        self.wfile.flush()
        self.wfile.close()
        self.rfile.close()  # and with it whatever the client sent too early
        idle_timeout = getattr(server, "idle_timeout", None)

        def wrapped(new: ssl.SSLSocket) -> None:
            self.request = self.connection = new
            if tracked is not None and pipeline is not None:
                pipeline.replace_request(tracked, new)

        upgrade(
            old,
            context,
            timeout=getattr(server, "handshake_timeout", _HANDSHAKE_TIMEOUT),
            # The kernel's receive timeout does not end a read the ssl module
            # retries: idle_timeout becomes the socket's own timeout.
            then_timeout=idle_timeout if idle_timeout is not None else old.gettimeout(),
            wrapped=wrapped,
        )
        self._open_files()

    def finish(self) -> None:
        if not self.wfile.closed:
            try:
                self.wfile.flush()
            except OSError:
                pass  # the client is gone; what we buffered for it has nowhere to go
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    """A handler for one datagram: read it from ``rfile``, write the reply to ``wfile``.

    The reply (``wfile``'s contents) is sent back to the client by ``finish``.
    """

    packet: bytes
    socket: socket.socket
    rfile: io.BytesIO
    wfile: io.BytesIO

    def setup(self) -> None:
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        self.socket.sendto(self.wfile.getvalue(), self.client_address)
