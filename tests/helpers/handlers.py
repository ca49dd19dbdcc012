"""Request handlers many tests serve: echoes of a line, of every line, of a datagram."""

from __future__ import annotations

import threading

import sockserve
from helpers.net import TIMEOUT


class OneLineEcho(sockserve.StreamRequestHandler):
    """Echoes one line, then ends the request.

    What a test that drives a server with ``handle_request()`` needs: the
    request ends without waiting for the client to close.
    """

    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


class LineEcho(sockserve.StreamRequestHandler):
    """Echoes every line until the client closes its side (a persistent connection)."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


def echo_when_released(release: threading.Event) -> type[sockserve.StreamRequestHandler]:
    """A handler that reads a line, waits until ``release`` is set, then echoes it.

    It holds its worker for as long as the test likes (and at most 3 x TIMEOUT,
    so that a failed test cannot leave it behind for good).
    """

    class Blocking(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            release.wait(TIMEOUT * 3)
            self.wfile.write(line)

    return Blocking


class PacketEcho(sockserve.DatagramRequestHandler):
    """Sends each datagram back to its sender."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.read())
