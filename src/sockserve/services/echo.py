"""Echo (RFC 862): send back whatever the client sends.

The simplest useful service, and a handy probe: ``nc HOST PORT`` shows the
server is up and the path to it works in both directions.
"""

from __future__ import annotations

import socket

import sockserve


class EchoStreamHandler(sockserve.BaseRequestHandler):
    """Echo over a stream (TCP or Unix): every byte goes back until the client closes.

    Echo is a byte stream, not lines, so this works on the raw socket
    (``self.request``) instead of ``rfile``/``wfile``: a line-based loop would
    hold back data until a newline and grow without bound on a long line.
    """

    request: socket.socket  # stream servers pass the connected socket

    #: Bytes read per ``recv_into``; one buffer is reused for the whole connection.
    buffer_size = 64 * 1024

    def handle(self) -> None:
        buffer = bytearray(self.buffer_size)
        with memoryview(buffer) as view:
            # recv_into fills the same buffer every time: no allocation per read.
            while received := self.request.recv_into(buffer):
                self.request.sendall(view[:received])
        # recv_into returned 0: the client closed its side (EOF). Returning
        # lets the server send our FIN and close the connection.


class AsyncEchoStreamHandler(sockserve.AsyncStreamRequestHandler):
    """Echo with coroutines, for ``--worker-class async``: many idle clients, one thread."""

    #: Bytes asked of one read.
    buffer_size = 64 * 1024

    async def handle(self) -> None:
        while data := await self.reader.read(self.buffer_size):
            self.writer.write(data)
            await self.writer.drain()  # a client that does not read stops us reading


class EchoDatagramHandler(sockserve.DatagramRequestHandler):
    """Echo over UDP: each datagram is answered with an identical one."""

    def handle(self) -> None:
        # DatagramRequestHandler.finish sends whatever was written to wfile.
        self.wfile.write(self.packet)
