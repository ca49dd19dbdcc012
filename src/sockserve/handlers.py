"""Request handlers: the objects that talk to one client (or answer one datagram).

The contract is the stdlib's: the server calls ``Handler(request,
client_address, server)``; the constructor runs ``setup()``, ``handle()`` and,
even when ``handle`` raises, ``finish()``.
"""

from __future__ import annotations

import io
import socket
from typing import TYPE_CHECKING, Any

from sockserve._types import Address, Request
from sockserve.core.reader import open_bounded_reader

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from sockserve.servers import BaseServer

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
