"""sockserve: the standard library's ``socketserver`` API, made fit for production.

``import sockserve as socketserver`` runs existing code unchanged: every public
name of the stdlib module is here, with the same hooks and defaults. On top of
that sockserve adds what a server exposed to the network needs; see the README.
sockserve supports POSIX systems (Linux first), where ``fork`` and Unix
sockets exist.
"""

from __future__ import annotations

# The ``X as X`` imports are names of the stdlib module outside its __all__ that
# code in the wild uses, so that it runs with sockserve in place of
# ``socketserver``: tests patch ``_ServerSelector`` (the serving loop reads it:
# see ``servers._new_selector``), programs read ``socketserver.socket.SOL_SOCKET``
# or count ``server._threads``. The README lists them.
import selectors as selectors
import socket as socket

from sockserve.aio import (
    AsyncMixIn,
    AsyncTCPServer,
    AsyncUDPServer,
    AsyncUnixDatagramServer,
    AsyncUnixStreamServer,
)
from sockserve.asynchandlers import AsyncDatagramRequestHandler, AsyncStreamRequestHandler
from sockserve.engine.connection import ConnectionInfo
from sockserve.engine.drain import DrainReport
from sockserve.engine.lifecycle import State
from sockserve.errors import LineTooLong, PeerError
from sockserve.handlers import BaseRequestHandler, DatagramRequestHandler, StreamRequestHandler
from sockserve.handlers import _SocketWriter as _SocketWriter
from sockserve.mixins import (
    ForkingMixIn,
    ForkingTCPServer,
    ForkingUDPServer,
    ForkingUnixDatagramServer,
    ForkingUnixStreamServer,
    ThreadingMixIn,
    ThreadingTCPServer,
    ThreadingUDPServer,
    ThreadingUnixDatagramServer,
    ThreadingUnixStreamServer,
)
from sockserve.observability.stats import ServerStats
from sockserve.pool import (
    ThreadPoolMixIn,
    ThreadPoolTCPServer,
    ThreadPoolUDPServer,
    ThreadPoolUnixDatagramServer,
    ThreadPoolUnixStreamServer,
)
from sockserve.servers import (
    BaseServer,
    TCPServer,
    UDPServer,
    UnixDatagramServer,
    UnixStreamServer,
)
from sockserve.servers import _ServerSelector as _ServerSelector
from sockserve.strategies.threads import _NoThreads as _NoThreads
from sockserve.strategies.threads import _Threads as _Threads

__version__ = "0.1.0"

# The stdlib's ``socketserver.__all__`` (Python 3.12+, which added the Forking
# Unix servers), in its order.
__all__ = [
    "BaseServer",
    "TCPServer",
    "UDPServer",
    "ThreadingUDPServer",
    "ThreadingTCPServer",
    "BaseRequestHandler",
    "StreamRequestHandler",
    "DatagramRequestHandler",
    "ThreadingMixIn",
    "ForkingUDPServer",
    "ForkingTCPServer",
    "ForkingMixIn",
    "UnixStreamServer",
    "UnixDatagramServer",
    "ThreadingUnixStreamServer",
    "ThreadingUnixDatagramServer",
    "ForkingUnixStreamServer",
    "ForkingUnixDatagramServer",
    # sockserve's own additions
    "ThreadPoolMixIn",
    "ThreadPoolTCPServer",
    "ThreadPoolUDPServer",
    "ThreadPoolUnixStreamServer",
    "ThreadPoolUnixDatagramServer",
    "AsyncMixIn",
    "AsyncTCPServer",
    "AsyncUnixStreamServer",
    "AsyncUDPServer",
    "AsyncUnixDatagramServer",
    "AsyncStreamRequestHandler",
    "AsyncDatagramRequestHandler",
    "ConnectionInfo",
    "DrainReport",
    "LineTooLong",
    "PeerError",
    "ServerStats",
    "State",
]

# Public classes report the import path users see ("sockserve.TCPServer"),
# not the private module that happens to define them.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
