"""Request handlers for the socketserver-API servers, written the idiomatic way.

The echo handlers are built by a factory because the same code must subclass
either the stdlib's or sockserve's ``BaseRequestHandler``: a drop-in
replacement is judged with the user's own handler, unchanged.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler
from typing import Any

#: Bytes asked of one recv(): large enough that a 16 KiB message is one call.
RECV_SIZE = 65536


def echo_handler_class(base: type[Any], name: str = "EchoHandler") -> type[Any]:
    """A stream handler that echoes until the client closes (recv/sendall loop)."""

    def handle(self: Any) -> None:
        sock = self.request
        while True:
            data = sock.recv(RECV_SIZE)
            if not data:
                return
            sock.sendall(data)

    return type(name, (base,), {"handle": handle, "__doc__": "Echo every byte back."})


def datagram_echo_handler_class(base: type[Any], name: str = "DatagramEchoHandler") -> type[Any]:
    """A datagram handler that sends each packet back to where it came from."""

    def handle(self: Any) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)

    return type(name, (base,), {"handle": handle, "__doc__": "Echo each datagram."})


class FixedBodyHTTPHandler(BaseHTTPRequestHandler):
    """GET returns a small fixed body with Content-Length, so HTTP/1.1 keep-alive works."""

    protocol_version = "HTTP/1.1"
    #: The headers and the body leave in two writes; with Nagle's algorithm on,
    #: the body waits for the client's delayed ACK (40 ms on Linux), and every
    #: server would measure that timer instead of itself.
    disable_nagle_algorithm = True
    body = b"Hello from the sockserve benchmark.\n"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: one stderr line per request would measure the terminal, not the server."""


class AsWrittenHTTPHandler(FixedBodyHTTPHandler):
    """The same handler as most users write it: Nagle's algorithm left on.

    Measures what a server's own defaults do for such a handler (sockserve's
    pool sets TCP_NODELAY on accepted connections; the stdlib does not).
    """

    disable_nagle_algorithm = False


#: Set in a server process's environment to serve ``AsWrittenHTTPHandler``.
AS_WRITTEN_ENV = "SOCKSERVE_BENCH_HTTP_AS_WRITTEN"


def http_handler_class() -> type[FixedBodyHTTPHandler]:
    """The HTTP handler this server process serves (see ``AS_WRITTEN_ENV``)."""
    return AsWrittenHTTPHandler if os.environ.get(AS_WRITTEN_ENV) else FixedBodyHTTPHandler
