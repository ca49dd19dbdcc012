"""The contract between the serving loop and a concurrency strategy.

A strategy decides *where* an admitted connection is served: on the serving
thread (inline), on a thread of its own, on a pool worker, in a forked child,
or as a task on an event loop. Everything else (accepting, limits, the
pre-handler stage, ending a connection, counting, drain) is the engine's, and
is the same for all of them. The stdlib mix-ins (``ThreadingMixIn``,
``ForkingMixIn``) and sockserve's (``ThreadPoolMixIn``, ``AsyncMixIn``) stay
the public way to choose one: each builds its strategy in
``_make_strategy()``, and its ``process_request`` hands the connection over.

A strategy is given, when built, the function that serves one connection to
its end (``run(conn)``: verify if pending, the handler, errors, ending; it
never raises) and the tracker of connections in flight. It provides what
:class:`Strategy` lists; the engine calls nothing else.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol, runtime_checkable

from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker

__all__ = ["RunConnection", "Strategy", "WorkerCounts", "shut_down_sockets", "wait_for_tracker"]

#: Serves one connection to its end; never raises an ``Exception``.
RunConnection = Callable[[Connection], None]


class WorkerCounts(NamedTuple):
    """What ``stats()`` reports about a strategy's workers."""

    #: Worker threads (pool), event-loop tasks, or connections being handled (others).
    workers: int
    #: Of those, how many are handling a connection now.
    busy: int
    #: Connections admitted and waiting for a worker (pool).
    pending: int


@runtime_checkable
class Strategy(Protocol):
    """Where admitted connections are served (see the module doc)."""

    #: True when ``submit`` returns before the connection is served: the
    #: strategy then ends it (through ``run``); False when ``submit`` serves it
    #: to the end on the calling thread.
    background: bool
    #: True when pre-handler steps run where the connection is served (the
    #: serving thread, a forked child) instead of the engine's selector thread.
    prepares_in_place: bool
    #: True when handlers get blocking sockets, so ``idle_timeout`` is kept by
    #: the kernel (SO_RCVTIMEO/SO_SNDTIMEO); an event loop keeps its own.
    blocking_sockets: bool

    @property
    def guards_slow_clients(self) -> bool:
        """Whether accepted sockets must let the slow-client guard see their I/O.

        (:class:`~sockserve.security.slowclients.GuardedSocket`.)
        """
        ...

    def submit(self, conn: Connection, *, force: bool = False, later: bool = False) -> bool:
        """Serve ``conn``; False if there is no room now (the engine refuses it).

        ``force``: take it even past the strategy's own queue bound, because
        something else bounds it (``max_connections``): a connection that
        finished its pre-handler steps, or the backlog taken during a drain.
        ``later``: if it has to wait, it may wait behind the others (it has
        sent only a fragment so far). Strategies without a queue ignore it.
        """
        ...

    def has_room(self) -> bool:
        """Whether ``submit`` would take one more connection now (back-pressure).

        A strategy that says no must call the ``wake`` callable it was given
        when room returns, so the serving loop watches the listener again.
        """
        ...

    def counts(self) -> WorkerCounts:
        """Workers, busy workers and waiting connections, for ``stats()``."""
        ...

    def close_idle(self) -> list[Connection]:
        """Drain: take out the connections that may be closed without losing work."""
        ...

    def abort(self, conns: list[Connection]) -> list[Connection]:
        """Drain deadline: make the handlers of ``conns`` return now.

        Returns the connections that will never run (still queued): the engine
        ends those itself.
        """
        ...

    def wait_idle(self, deadline: float | None, give_up: threading.Event | None = None) -> bool:
        """Wait until nothing is served, the deadline, or ``give_up`` is set; True if idle."""
        ...

    def close(self, *, wait: bool, timeout: float | None) -> None:
        """Release the strategy's threads, loops or children (waiting up to ``timeout``)."""
        ...


def shut_down_sockets(conns: Iterable[Connection]) -> None:
    """Shut the connections' sockets down so blocked reads and writes return at once.

    ``shutdown()``, not ``close()``: closing a socket another thread is blocked
    on does not wake it, and the descriptor number could be reused meanwhile.
    """
    for conn in conns:
        request = conn.request
        if isinstance(request, socket.socket):
            try:
                # The descriptor's own shutdown, also for an SSLSocket: its
                # shutdown() from this thread would drop the TLS layer under the
                # handler, whose next write would go out in the clear.
                socket.socket.shutdown(request, socket.SHUT_RDWR)
            except OSError:
                pass  # closed or reset meanwhile: it is ending anyway


def wait_for_tracker(
    tracker: ConnectionTracker, deadline: float | None, give_up: threading.Event | None
) -> bool:
    """Wait until no connection is in flight, the deadline, or ``give_up``; True if none is."""

    def settled() -> bool:
        return tracker.in_flight == 0 or (give_up is not None and give_up.is_set())

    tracker.wait_until(settled, deadline)
    return tracker.in_flight == 0


class OneTaskPerConnection:
    """What strategies without a queue of their own share (inline, a thread each).

    Every admitted connection is being served at once, so the tracker's
    in-flight count is the whole story: there is always room, nothing waits
    to be closed idle, a drain's abort shuts the sockets down, and idle means
    the tracker has nothing in flight. Subclasses set ``_tracker``.
    """

    _tracker: ConnectionTracker

    def has_room(self) -> bool:
        return True

    def counts(self) -> WorkerCounts:
        active = self._tracker.in_flight
        return WorkerCounts(active, active, 0)

    def close_idle(self) -> list[Connection]:
        return []

    def abort(self, conns: list[Connection]) -> list[Connection]:
        shut_down_sockets(conns)
        return []

    def wait_idle(self, deadline: float | None, give_up: threading.Event | None = None) -> bool:
        return wait_for_tracker(self._tracker, deadline, give_up)
