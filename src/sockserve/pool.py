"""``ThreadPoolMixIn``: a bounded pool of worker threads with back-pressure.

The stdlib's ``ThreadingMixIn`` starts a thread per connection with no upper
bound: a flood of connections becomes a flood of threads. Here a fixed number
of workers (``max_workers``) serve connections taken from a bounded queue
(``max_pending``). When both are full:

* ``overflow="block"`` (default): the serving loop stops watching the
  listener; new clients wait in the kernel's listen backlog and are accepted
  the moment a worker frees up. Nothing grows in user space.
* ``overflow="reject"``: the connection is accepted and handed to
  ``reject_request(request, client_address, "overflow")`` at once, which a
  protocol can override to say "busy" before closing; it is counted in
  ``stats().rejected``.

``dispatch="readable"`` parks new connections in the pre-handler stage (one
selector thread, see :mod:`sockserve.engine.prepare`) until their
first byte arrives (or ``first_byte_timeout`` closes them), so clients that
connect and say nothing cost a file descriptor, not a worker. Leave it off for
protocols where the server speaks first (daytime, SMTP banners).

Workers are kept hot: while ``eager_workers`` (2) are busy, a new request
waits up to ``grow_after`` (2 ms) for one of them to finish before another
worker is woken or started; see :mod:`sockserve.strategies.workers` for the
measurements behind it. Set ``grow_after = 0`` to start every request at once.

The trade-off, plainly: with persistent connections at most ``max_workers``
clients are served at once; the others wait. For many long-lived, mostly idle
connections pick more workers, several processes (``sockserve run --workers``)
or asynchronous handlers (``AsyncTCPServer``).
"""

from __future__ import annotations

import socket

from sockserve._types import Address, Request
from sockserve.engine.pipeline import ConnectionPipeline
from sockserve.engine.prepare import Step, WaitForData
from sockserve.options import family_default
from sockserve.servers import (
    MixInBase,
    TCPServer,
    UDPServer,
    UnixDatagramServer,
    UnixStreamServer,
)
from sockserve.strategies.base import Strategy
from sockserve.strategies.pool import PoolStrategy

__all__ = [
    "ThreadPoolMixIn",
    "ThreadPoolTCPServer",
    "ThreadPoolUDPServer",
    "ThreadPoolUnixDatagramServer",
    "ThreadPoolUnixStreamServer",
]


class ThreadPoolMixIn(MixInBase):
    """Handle requests on a bounded pool of named worker threads (see the module doc)."""

    #: Worker threads; at most this many requests are handled at once.
    max_workers: int = family_default("max_workers", "pool")
    #: Accepted requests that may wait for a worker before the server stops accepting.
    max_pending: int = family_default("max_pending", "pool")
    #: Requests start at once while fewer than this many workers are busy; beyond
    #: that a request first waits (up to ``grow_after``) for a busy worker to
    #: free up, which in CPython is cheaper than waking another thread.
    eager_workers: int = family_default("eager_workers", "pool")
    #: Seconds a queued request waits for a busy worker before another worker is
    #: put on it (up to ``max_workers``). 0: every request starts at once.
    grow_after: float = family_default("grow_after", "pool")
    #: "block" (stop accepting when full) or "reject" (accept and reject at once).
    overflow: str = family_default("overflow", "pool")
    #: "readable" (a connection takes a worker once it sent something), "immediate",
    #: or "auto": readable unless the handler says ``speaks_first = True``.
    dispatch: str = family_default("dispatch", "pool")
    #: Seconds a new connection may stay silent when it waits for its first bytes.
    first_byte_timeout: float | None = family_default("first_byte_timeout", "pool")
    #: While connections wait for a worker, take one back from a client moving fewer
    #: bytes a second than this (see sockserve.security.slowclients). None: never.
    min_rate: float | None = family_default("min_rate", "pool")
    #: Seconds a worker may wait on a slower client before ``min_rate`` applies.
    min_rate_grace: float = family_default("min_rate_grace", "pool")
    #: ``server_close`` waits for the workers to finish what they hold.
    block_on_close: bool = True

    _workers: PoolStrategy
    _closed_for_good: str | None = (
        "server_close() stopped its worker threads: create a new server to serve again"
    )

    def _make_strategy(self, pipeline: ConnectionPipeline) -> Strategy:
        self._workers = PoolStrategy(
            pipeline.serve,
            pipeline.tracker,
            max_workers=self.max_workers,
            max_pending=self.max_pending,
            eager_workers=self.eager_workers,
            grow_after=self.grow_after,
            blocks_when_full=self.overflow == "block",
            wake=self.wake_loop,
            name=f"sockserve-{type(self).__name__}",
            min_rate=self.min_rate if self._is_stream() else None,
            min_rate_grace=self.min_rate_grace,
            log=pipeline.error_log,
        )
        return self._workers

    def _pre_handler_steps(self) -> list[Step]:
        steps = super()._pre_handler_steps()
        speaks_first = bool(getattr(self.RequestHandlerClass, "speaks_first", False))
        # "auto" holds connections only with overflow="block": "reject" is the
        # user's own answer to a full pool (say busy at once), which holding
        # connections past the pool's capacity would defeat.
        wants_data = self.dispatch == "readable" or (
            self.dispatch == "auto"
            and not speaks_first
            and self._is_stream()
            and self.overflow == "block"
        )
        if wants_data and not any(step.kind == "tls" for step in steps):
            # (After a TLS handshake the client has spoken already.)
            # "auto" hands a connection over without its first bytes while a
            # worker is free (speaks-first handlers keep working undeclared).
            handover = self._workers.has_idle_worker if self.dispatch == "auto" else None
            steps.append(WaitForData(self.first_byte_timeout, handover))
        return steps

    def _is_stream(self) -> bool:
        return getattr(self, "socket_type", socket.SOCK_STREAM) == socket.SOCK_STREAM

    def _blocks_on_close(self) -> bool:
        return self.block_on_close

    def process_request(self, request: Request, client_address: Address) -> None:
        """Queue the request for a worker; refuse it if the pool is full ("reject")."""
        pipeline = self._pipeline
        pipeline.submit(pipeline.connection_for(request, client_address))


class _StreamPoolDefaults:
    """Safe limits for pool servers on stream sockets (the stdlib-named classes have none).

    Their values are the "pool" family's in :data:`sockserve.options.OPTIONS`.
    """

    max_connections: int | None = family_default("max_connections", "pool")
    idle_timeout: float | None = family_default("idle_timeout", "pool")
    max_line: int | None = family_default("max_line", "pool")
    tcp_nodelay: bool = family_default("tcp_nodelay", "pool")


class ThreadPoolTCPServer(_StreamPoolDefaults, ThreadPoolMixIn, TCPServer):
    pass


class ThreadPoolUDPServer(ThreadPoolMixIn, UDPServer):
    pass


class ThreadPoolUnixStreamServer(_StreamPoolDefaults, ThreadPoolMixIn, UnixStreamServer):
    pass


class ThreadPoolUnixDatagramServer(ThreadPoolMixIn, UnixDatagramServer):
    pass
