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

``dispatch="readable"`` parks new connections in one selector until their
first byte arrives (or ``first_byte_timeout`` closes them), so clients that
connect and say nothing cost a file descriptor, not a worker. Leave it off for
protocols where the server speaks first (daytime, SMTP banners).

Workers are kept hot: while ``eager_workers`` (2) are busy, a new request
waits up to ``grow_after`` (2 ms) for one of them to finish before another
worker is woken or started; see :mod:`sockserve.concurrency.workers` for the
measurements behind it. Set ``grow_after = 0`` to start every request at once.

The trade-off, plainly: with persistent connections at most ``max_workers``
clients are served at once; the others wait. For many long-lived, mostly idle
connections pick more workers, several processes (``sockserve run --workers``)
or asynchronous handlers (``AsyncTCPServer``).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from sockserve._types import Address, Request
from sockserve.concurrency.idle import FirstByteWaiter
from sockserve.concurrency.workers import WorkerPool
from sockserve.core.lifecycle import State
from sockserve.servers import TCPServer, UDPServer, UnixDatagramServer, UnixStreamServer

__all__ = [
    "ThreadPoolMixIn",
    "ThreadPoolTCPServer",
    "ThreadPoolUDPServer",
    "ThreadPoolUnixDatagramServer",
    "ThreadPoolUnixStreamServer",
]

_log = logging.getLogger("sockserve.pool")


class ThreadPoolMixIn:
    """Handle requests on a bounded pool of named worker threads (see the module doc)."""

    #: Worker threads; at most this many requests are handled at once.
    max_workers: int = 32
    #: Accepted requests that may wait for a worker before the server stops accepting.
    max_pending: int = 32
    #: Requests start at once while fewer than this many workers are busy; beyond
    #: that a request first waits (up to ``grow_after``) for a busy worker to
    #: free up, which in CPython is cheaper than waking another thread.
    eager_workers: int = 2
    #: Seconds a queued request waits for a busy worker before another worker is
    #: put on it (up to ``max_workers``). 0: every request starts at once.
    grow_after: float = 0.002
    #: "block" (stop accepting when full) or "reject" (accept and reject at once).
    overflow: str = "block"
    #: "immediate" (hand to a worker at once) or "readable" (once the client sent a byte).
    dispatch: str = "immediate"
    #: With dispatch="readable": seconds a new connection may stay silent. None: forever.
    first_byte_timeout: float | None = 60.0
    #: ``server_close`` waits for the workers to finish what they hold.
    block_on_close: bool = True

    _dispatches_in_background = True
    _closed_for_good: str | None = (
        "server_close() stopped its worker threads: create a new server to serve again"
    )
    _pool: WorkerPool[tuple[Request, Address]]
    _waiter: FirstByteWaiter | None
    _waiting_for_room = False

    def _setup_strategy(self) -> None:
        self._pool = WorkerPool(
            self._run_job,
            max_workers=self.max_workers,
            max_pending=self.max_pending,
            eager_workers=self.eager_workers,
            grow_after=self.grow_after,
            name=f"sockserve-{type(self).__name__}",
            on_room=self._room_again,
        )
        self._waiter = None
        if self.dispatch == "readable":
            self._waiter = FirstByteWaiter(
                on_readable=self._first_byte_arrived,
                on_timeout=self._first_byte_timed_out,
                timeout=self.first_byte_timeout,
            )

    def _run_job(self, job: tuple[Request, Address]) -> None:
        self._run_request(*job)  # type: ignore[attr-defined]

    def process_request(self, request: Request, client_address: Address) -> None:
        """Queue the request for a worker (or park it until readable)."""
        if self._waiter is not None and self._waiter.park(request, client_address):
            return
        # While draining, what is accepted is the backlog being emptied: queue
        # it all (bounded by the backlog's size) rather than reset anyone.
        draining = self.state is State.DRAINING  # type: ignore[attr-defined]
        if not self._pool.submit((request, client_address), force=draining):
            self._overflowed(request, client_address)

    def _overflowed(self, request: Request, client_address: Address) -> None:
        """The pool is full (overflow="reject", or a race with "block"): refuse the request."""
        self._tracker.reject_admitted(request, "overflow")  # type: ignore[attr-defined]
        self._refuse(request, client_address, "overflow")  # type: ignore[attr-defined]

    def _ready_to_accept(self) -> bool:
        """Back-pressure: watch the listener only while a worker or a queue slot is free."""
        if self.overflow == "reject" or self._waiter is not None:
            return True
        # Flag first, check second: a worker freeing up between the two sees
        # the flag and wakes the loop, so no wake-up is lost.
        self._waiting_for_room = True
        if self._pool.has_room():
            self._waiting_for_room = False
            return True
        return False

    def _room_again(self) -> None:
        if self._waiting_for_room:
            self._waiting_for_room = False
            self._wake()  # type: ignore[attr-defined]

    def _first_byte_arrived(self, request: Any, client_address: object) -> None:
        # Bounded by max_connections, not by the queue: the client is talking.
        if not self._pool.submit((request, client_address), force=True):
            self._end_unstarted(request)

    def _first_byte_timed_out(self, request: Any, client_address: object) -> None:
        self._tracker.count("timed_out")  # type: ignore[attr-defined]
        self._end_unstarted(request, "timeout")

    def _end_unstarted(self, request: Request, outcome: str = "closed-idle") -> None:
        """End a request no handler ever saw."""
        if self.access_log:  # type: ignore[attr-defined]
            self._outcomes[id(request)] = outcome  # type: ignore[attr-defined]
        self._end_request(request)  # type: ignore[attr-defined]

    def _worker_counts(self) -> tuple[int, int, int]:
        return self._pool.counts()

    def _close_idle_requests(self) -> int:
        """Drain: close the parked connections that never sent anything."""
        if self._waiter is None:
            return 0
        leftovers = self._waiter.stop()
        for request, _address in leftovers:
            self._end_unstarted(request)
        return len(leftovers)

    def _abort_requests(self) -> None:
        """Drain deadline: drop what never reached a worker, then abort the rest."""
        for request, _address in self._pool.discard_pending():
            self._end_unstarted(request)
        super()._abort_requests()  # type: ignore[misc]

    def server_close(self) -> None:
        if getattr(self, "socket_type", None) == socket.SOCK_DGRAM:
            # Replies go out through the server's socket: finish before closing it.
            self._pool.close(wait=self.block_on_close)
        super().server_close()  # type: ignore[misc]
        self._close_idle_requests()
        self._pool.close(wait=self.block_on_close)


class _StreamPoolDefaults:
    """Safe limits for pool servers on stream sockets (the stdlib-named classes have none)."""

    max_connections: int | None = 4096
    idle_timeout: float | None = 300.0
    max_line: int | None = 65536
    tcp_nodelay: bool = True


class ThreadPoolTCPServer(_StreamPoolDefaults, ThreadPoolMixIn, TCPServer):
    pass


class ThreadPoolUDPServer(ThreadPoolMixIn, UDPServer):
    pass


class ThreadPoolUnixStreamServer(_StreamPoolDefaults, ThreadPoolMixIn, UnixStreamServer):
    pass


class ThreadPoolUnixDatagramServer(ThreadPoolMixIn, UnixDatagramServer):
    pass
