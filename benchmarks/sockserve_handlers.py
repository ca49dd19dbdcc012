"""Handlers as importable module attributes, for ``python -m sockserve run MODULE:Handler``.

The prefork runner takes a handler by dotted path, so these must exist at
import time; this module imports sockserve and is only loaded by servers that
use it. It must also import with older revisions of sockserve (``--compare-rev``):
what a revision lacks is left undefined here, and that kind is reported
unavailable for it, not the whole revision.
"""

from __future__ import annotations

import sockserve
from benchmarks.handlers import (
    RECV_SIZE,
    datagram_echo_handler_class,
    echo_handler_class,
    http_handler_class,
)

EchoHandler = echo_handler_class(sockserve.BaseRequestHandler, "EchoHandler")
DatagramEchoHandler = datagram_echo_handler_class(
    sockserve.BaseRequestHandler, "DatagramEchoHandler"
)
HTTPHandler = http_handler_class()


if hasattr(sockserve, "AsyncStreamRequestHandler"):

    class AsyncEchoHandler(sockserve.AsyncStreamRequestHandler):
        """The echo handler written for the async strategy: read what came, write it back."""

        async def handle(self) -> None:
            reader, writer = self.reader, self.writer
            while data := await reader.read(RECV_SIZE):
                writer.write(data)
                await writer.drain()


if hasattr(sockserve, "AsyncDatagramRequestHandler"):

    class AsyncDatagramEchoHandler(sockserve.AsyncDatagramRequestHandler):
        """The datagram echo for the async strategy: each datagram answered with itself."""

        async def handle(self) -> None:
            self.reply(self.packet)


__all__ = [
    "AsyncDatagramEchoHandler",
    "AsyncEchoHandler",
    "DatagramEchoHandler",
    "EchoHandler",
    "HTTPHandler",
]
