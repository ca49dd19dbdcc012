"""Build a server for one listener from a target and the run's settings.

The listening socket already exists (the master opened it, systemd passed it,
or SO_REUSEPORT gave this worker its own); the server is constructed with
``bind_and_activate=False`` and handed that socket, so user server classes
and factories work unchanged.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
from typing import Any

from sockserve.aio import AsyncTCPServer, AsyncUnixStreamServer
from sockserve.exitcodes import ExitCode
from sockserve.handlers import DatagramRequestHandler, StreamRequestHandler
from sockserve.mixins import (
    ForkingTCPServer,
    ForkingUDPServer,
    ForkingUnixDatagramServer,
    ForkingUnixStreamServer,
    ThreadingTCPServer,
    ThreadingUDPServer,
    ThreadingUnixDatagramServer,
    ThreadingUnixStreamServer,
)
from sockserve.pool import (
    ThreadPoolTCPServer,
    ThreadPoolUDPServer,
    ThreadPoolUnixDatagramServer,
    ThreadPoolUnixStreamServer,
)
from sockserve.runner.loader import Target, TargetError
from sockserve.runner.settings import RunConfig
from sockserve.servers import (
    BaseServer,
    TCPServer,
    UDPServer,
    UnixDatagramServer,
    UnixStreamServer,
)

__all__ = ["build_server", "effective_worker_class", "server_class_for", "worker_class_of"]

# (worker class, unix?, datagram?) -> server class
_SERVER_CLASSES: dict[tuple[str, bool, bool], type[TCPServer]] = {
    ("sync", False, False): TCPServer,
    ("sync", False, True): UDPServer,
    ("sync", True, False): UnixStreamServer,
    ("sync", True, True): UnixDatagramServer,
    ("threads", False, False): ThreadingTCPServer,
    ("threads", False, True): ThreadingUDPServer,
    ("threads", True, False): ThreadingUnixStreamServer,
    ("threads", True, True): ThreadingUnixDatagramServer,
    ("pool", False, False): ThreadPoolTCPServer,
    ("pool", False, True): ThreadPoolUDPServer,
    ("pool", True, False): ThreadPoolUnixStreamServer,
    ("pool", True, True): ThreadPoolUnixDatagramServer,
    ("fork", False, False): ForkingTCPServer,
    ("fork", False, True): ForkingUDPServer,
    ("fork", True, False): ForkingUnixStreamServer,
    ("fork", True, True): ForkingUnixDatagramServer,
    ("async", False, False): AsyncTCPServer,
    ("async", True, False): AsyncUnixStreamServer,
    # Datagrams have no async handlers: an async run serves them with the pool.
    ("async", False, True): ThreadPoolUDPServer,
    ("async", True, True): ThreadPoolUnixDatagramServer,
}


def server_class_for(worker_class: str, sock: socket.socket) -> type[TCPServer]:
    """The sockserve server class that serves ``sock`` with the ``worker_class`` strategy."""
    unix = sock.family == socket.AF_UNIX
    datagram = sock.type == socket.SOCK_DGRAM
    return _SERVER_CLASSES[(worker_class, unix, datagram)]


def worker_class_of(server: object) -> str:
    """The worker class whose server ``server`` is (``pool``...), or its class name if none.

    For the start-up line: a target's own server class (or a subclass) is
    named as it is. Datagram servers of an async run are the pool's.
    """
    for (worker_class, _unix, _datagram), cls in _SERVER_CLASSES.items():
        if type(server) is cls:
            return worker_class
    return type(server).__name__


def effective_worker_class(config: RunConfig, handler: Any, datagram: bool = False) -> str:
    """The strategy for ``handler``: async handlers need the async one, others cannot use it.

    An async handler with the default worker class gets ``async``; with a
    worker class chosen explicitly that cannot run it, the run is refused as a
    configuration error (exit status 2) naming the setting and its source, as
    is a synchronous handler with ``--worker-class async``. Datagram
    listeners of an async run are served by the pool (there are no async
    datagram handlers), so there any synchronous handler is fine, except one
    written for streams (a ``StreamRequestHandler``): that, and a
    ``DatagramRequestHandler`` on a stream listener, is refused at start with
    exit status 7 rather than failing on every request.
    """
    is_async = bool(getattr(handler, "_is_async_handler", False))
    name = getattr(handler, "__name__", handler)
    chosen = config.worker_class
    where = f"worker_class = {chosen!r} (from {config.source('worker_class')})"
    if datagram:
        if is_async or _is_stream_handler(handler):
            kind = "an async handler" if is_async else "a stream handler"
            raise TargetError(
                f"{name} is {kind}: it serves stream sockets, not a udp:// listener",
                ExitCode.BAD_TARGET,
            )
        return chosen
    if _is_datagram_handler(handler):
        raise TargetError(
            f"{name} is a datagram handler: it serves udp:// listeners, not a stream socket "
            "(bind udp://HOST:PORT, or derive it from StreamRequestHandler)",
            ExitCode.BAD_TARGET,
        )
    if is_async:
        if chosen == "async" or config.source("worker_class") == "default":
            return "async"
        raise TargetError(
            f"{where}: {name} is an async handler, which only --worker-class async serves",
            ExitCode.USAGE,
        )
    if chosen == "async":
        raise TargetError(
            f"{where}: {name} is a synchronous handler; --worker-class async serves "
            "AsyncStreamRequestHandler subclasses (use pool, threads, fork or sync)",
            ExitCode.USAGE,
        )
    return chosen


def _is_stream_handler(handler: Any) -> bool:
    """Whether ``handler`` reads a byte stream (``rfile``/``wfile`` over a connection)."""
    return isinstance(handler, type) and issubclass(
        handler, StreamRequestHandler | socketserver.StreamRequestHandler
    )


def _is_datagram_handler(handler: Any) -> bool:
    """Whether ``handler`` takes ``(data, socket)`` requests: one datagram each.

    A plain ``BaseRequestHandler`` subclass may serve either (the built-in
    services' stream handlers do): only the two specialised bases tell.
    """
    return isinstance(handler, type) and issubclass(
        handler, DatagramRequestHandler | socketserver.DatagramRequestHandler
    )


def build_server(
    target: Target,
    sock: socket.socket,
    config: RunConfig,
    *,
    tls: ssl.SSLContext | None = None,
    address: Any = None,
) -> BaseServer:
    """A server for ``sock`` (serving TLS with ``tls``); ``TargetError`` if the target cannot.

    ``address`` is what clients connect to, when ``sock.getsockname()`` is not
    (a Unix socket file linked into place: see ``Listener.address``).
    """
    datagram = sock.type == socket.SOCK_DGRAM
    if address is None:
        address = sock.getsockname()
    try:
        if target.kind in ("handler", "service"):
            handler = target.handler_for(datagram, asynchronous=config.worker_class == "async")
            worker_class = effective_worker_class(config, handler, datagram)
            cls = server_class_for(worker_class, sock)
            options = config.server_options(cls, worker_class)
            if tls is not None:
                options["ssl_context"] = tls
            server: Any = cls(address, handler, bind_and_activate=False, **options)
            if datagram:
                server.max_packet_size = 65535  # any UDP payload: echo must not truncate
        elif target.kind == "server":
            server = target.obj(address, bind_and_activate=False)
        else:
            server = target.obj(address)
    except TargetError:
        raise
    except Exception as exc:
        raise TargetError(
            f"building a server from {target.spec!r} failed: {type(exc).__name__}: {exc}",
            ExitCode.WORKER_BOOT,
        ) from exc
    if not isinstance(server, BaseServer) or not hasattr(server, "socket"):
        raise TargetError(
            f"{target.spec!r} returned {type(server).__name__}, not a sockserve socket server",
            ExitCode.BAD_TARGET,
        )
    # Swap the socket the constructor made (unbound) for the listener. It is
    # shared with other workers: non-blocking, so a worker that loses the race
    # for a connection gets EAGAIN (ignored) instead of blocking in accept().
    sock.setblocking(False)
    socket_server: Any = server
    socket_server.socket.close()
    socket_server.socket = sock
    socket_server.address_family = sock.family
    socket_server.server_address = address
    if tls is not None and target.kind in ("server", "factory"):
        # The user's own server gets the run's TLS too (new connections read it).
        socket_server.ssl_context = tls
    return server
