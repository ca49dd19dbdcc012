"""Discard (RFC 863): read everything, answer nothing.

A sink for testing senders: how fast can a client push data through the path,
with no reply traffic to disturb the measurement?
"""

from __future__ import annotations

import socket

import sockserve


class DiscardStreamHandler(sockserve.BaseRequestHandler):
    """Discard over a stream (TCP or Unix): read and drop data until the client closes."""

    request: socket.socket  # stream servers pass the connected socket

    #: Bytes read per ``recv_into``; one buffer is reused for the whole connection.
    buffer_size = 64 * 1024

    def handle(self) -> None:
        buffer = bytearray(self.buffer_size)
        # Reading (rather than ignoring the client) keeps its sends flowing;
        # 0 bytes means it closed its side.
        while self.request.recv_into(buffer):
            pass


class AsyncDiscardStreamHandler(sockserve.AsyncStreamRequestHandler):
    """Discard with coroutines, for ``--worker-class async``."""

    buffer_size = 64 * 1024

    async def handle(self) -> None:
        while await self.reader.read(self.buffer_size):
            pass


class DiscardDatagramHandler(sockserve.BaseRequestHandler):
    """Discard over UDP: the datagram is dropped and no reply is sent.

    Deliberately not a ``DatagramRequestHandler``: its ``finish`` always sends
    ``wfile``'s contents back, even when empty, and an empty datagram is still
    a reply, which RFC 863 forbids.
    """

    def handle(self) -> None:
        pass  # receiving the datagram was the whole service
