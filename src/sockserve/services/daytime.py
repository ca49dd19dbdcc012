"""Daytime (RFC 867): one line with the current date and time, then close.

RFC 867 leaves the format open; this uses the RFC's own example layout, in
UTC so that every server agrees: ``Thursday, November 26, 2026 23:40:00-UTC``.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import sockserve

# Fixed English names: strftime's %A and %B follow the process's locale, and
# the protocol's answer must not change with the operator's language settings.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

#: The line's layout for ``datetime.strptime`` (in the C locale), for clients and tests.
DAYTIME_FORMAT = "%A, %B %d, %Y %H:%M:%S-UTC"


def daytime_line(now: datetime | None = None) -> bytes:
    """The daytime answer for ``now`` (default: the current time), CRLF-terminated ASCII."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    text = (
        f"{_WEEKDAYS[now.weekday()]}, {_MONTHS[now.month - 1]} {now.day}, {now.year} "
        f"{now:%H:%M:%S}-UTC\r\n"
    )
    return text.encode("ascii")


class DaytimeStreamHandler(sockserve.BaseRequestHandler):
    """Daytime over a stream (TCP or Unix): send the line; the server then closes.

    Anything the client sends is ignored, as the RFC says.
    """

    #: The server speaks first: the pool does not wait for the client's bytes.
    speaks_first = True

    request: socket.socket  # stream servers pass the connected socket

    def handle(self) -> None:
        self.request.sendall(daytime_line())


class AsyncDaytimeStreamHandler(sockserve.AsyncStreamRequestHandler):
    """Daytime with coroutines, for ``--worker-class async``: the line, then the close."""

    async def handle(self) -> None:
        self.writer.write(daytime_line())
        await self.writer.drain()


class DaytimeDatagramHandler(sockserve.DatagramRequestHandler):
    """Daytime over UDP: any datagram (its content is ignored) gets the line back."""

    def handle(self) -> None:
        self.wfile.write(daytime_line())
