"""Character generator (RFC 864): an endless stream of printable ASCII.

The classic pattern: lines of 72 of the 95 printable characters, each line
starting one character further along the cycle than the one before, CRLF
terminated. Useful to test receivers and to see corruption at a glance (a
damaged line breaks the diagonal).
"""

from __future__ import annotations

import random
import socket

import sockserve

#: The 95 printable ASCII characters in the RFC's order: "!" to "~", then space.
CHARACTERS = bytes(range(ord("!"), ord("~") + 1)) + b" "
LINE_LENGTH = 72  # characters per line, CRLF not included


def _lines() -> bytes:
    """One full cycle: 95 lines, after which the pattern repeats exactly."""
    doubled = CHARACTERS * 2  # so a line starting near the end can wrap around
    return b"".join(
        doubled[start : start + LINE_LENGTH] + b"\r\n" for start in range(len(CHARACTERS))
    )


#: 95 lines of 74 bytes. Since a cycle ends where the next begins, sending it
#: again and again continues the rotation seamlessly.
CYCLE = _lines()


class ChargenStreamHandler(sockserve.BaseRequestHandler):
    """Chargen over a stream (TCP or Unix): send the pattern until the client goes away.

    Anything the client sends is ignored. The client ends the service by
    closing the connection, which surfaces here as a failed send.
    """

    #: The server speaks first: the pool does not wait for the client's bytes.
    speaks_first = True

    request: socket.socket  # stream servers pass the connected socket

    #: Cycles per ``sendall``: about 63 KiB per call keeps the per-call overhead low.
    cycles_per_send = 9

    def handle(self) -> None:
        block = CYCLE * self.cycles_per_send
        try:
            while True:
                self.request.sendall(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed: that is how chargen normally ends


class AsyncChargenStreamHandler(sockserve.AsyncStreamRequestHandler):
    """Chargen with coroutines, for ``--worker-class async``: the pattern until the client goes."""

    cycles_per_send = ChargenStreamHandler.cycles_per_send

    async def handle(self) -> None:
        block = CYCLE * self.cycles_per_send
        try:
            while True:
                self.writer.write(block)
                await self.writer.drain()  # waits while the client is not reading
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed: that is how chargen normally ends


class ChargenDatagramHandler(sockserve.DatagramRequestHandler):
    """Chargen over UDP: any datagram gets back 0 to 512 characters of the pattern."""

    #: RFC 864: "a random number (between 0 and 512) of characters".
    max_length = 512

    def handle(self) -> None:
        # Not cryptographic: the length only has to vary.
        self.wfile.write(CYCLE[: random.randint(0, self.max_length)])
