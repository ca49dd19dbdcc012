"""The classic Internet test services, written with sockserve's public API.

Each service has a stream handler (served over TCP and Unix stream sockets),
the same written with coroutines (for the async strategy) and a datagram
handler (served over UDP). They double as short examples of
sockserve handlers. :data:`SERVICES` lets the command line (and anything else
that serves them by name) find them without knowing the modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from sockserve.asynchandlers import AsyncStreamRequestHandler
from sockserve.handlers import BaseRequestHandler
from sockserve.services.chargen import (
    AsyncChargenStreamHandler,
    ChargenDatagramHandler,
    ChargenStreamHandler,
)
from sockserve.services.daytime import (
    AsyncDaytimeStreamHandler,
    DaytimeDatagramHandler,
    DaytimeStreamHandler,
)
from sockserve.services.discard import (
    AsyncDiscardStreamHandler,
    DiscardDatagramHandler,
    DiscardStreamHandler,
)
from sockserve.services.echo import AsyncEchoStreamHandler, EchoDatagramHandler, EchoStreamHandler

__all__ = [
    "SERVICES",
    "AsyncChargenStreamHandler",
    "AsyncDaytimeStreamHandler",
    "AsyncDiscardStreamHandler",
    "AsyncEchoStreamHandler",
    "ChargenDatagramHandler",
    "ChargenStreamHandler",
    "DaytimeDatagramHandler",
    "DaytimeStreamHandler",
    "DiscardDatagramHandler",
    "DiscardStreamHandler",
    "EchoDatagramHandler",
    "EchoStreamHandler",
    "Service",
]


class Service(NamedTuple):
    """The handlers of one service and the one-line description shown in ``--help``."""

    stream: type[BaseRequestHandler]  # TCP and Unix stream sockets
    datagram: type[BaseRequestHandler]  # UDP
    description: str
    #: The stream handler written with coroutines (``--worker-class async``).
    async_stream: type[AsyncStreamRequestHandler]


#: Service name -> its handlers. Read-only: the names are the command line's subcommands.
SERVICES: Mapping[str, Service] = MappingProxyType(
    {
        "echo": Service(
            EchoStreamHandler,
            EchoDatagramHandler,
            "send back what the client sends (RFC 862)",
            AsyncEchoStreamHandler,
        ),
        "discard": Service(
            DiscardStreamHandler,
            DiscardDatagramHandler,
            "read and drop everything (RFC 863)",
            AsyncDiscardStreamHandler,
        ),
        "daytime": Service(
            DaytimeStreamHandler,
            DaytimeDatagramHandler,
            "send the date and time (RFC 867)",
            AsyncDaytimeStreamHandler,
        ),
        "chargen": Service(
            ChargenStreamHandler,
            ChargenDatagramHandler,
            "send lines of printable characters (RFC 864)",
            AsyncChargenStreamHandler,
        ),
    }
)
