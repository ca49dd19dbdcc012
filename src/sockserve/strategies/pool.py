"""A bounded pool of worker threads: ``ThreadPoolMixIn``'s strategy.

The pool itself (hot workers, the bounded queue) is
:class:`~sockserve.strategies.workers.WorkerPool`; this adapts it to the
strategy contract: back-pressure through ``has_room`` and a wake-up when room
returns, and at a drain's deadline the queued connections handed back.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker
from sockserve.observability.logs import RateLimitedLog
from sockserve.security.slowclients import SLOW, SlowClientGuard, release
from sockserve.strategies.base import (
    RunConnection,
    WorkerCounts,
    shut_down_sockets,
    wait_for_tracker,
)
from sockserve.strategies.workers import WorkerPool

__all__ = ["PoolStrategy"]


class PoolStrategy:
    """Serves connections on up to ``max_workers`` threads; ``max_pending`` may wait."""

    background = True
    prepares_in_place = False
    blocking_sockets = True

    def __init__(
        self,
        run: RunConnection,
        tracker: ConnectionTracker,
        *,
        max_workers: int,
        max_pending: int,
        eager_workers: int,
        grow_after: float,
        blocks_when_full: bool,
        wake: Callable[[], None],
        name: str,
        min_rate: float | None = None,
        min_rate_grace: float = 1.0,
        log: RateLimitedLog | None = None,
    ) -> None:
        self._tracker = tracker
        self._blocks = blocks_when_full
        self._wake = wake
        self._waiting_for_room = False
        self._guard: SlowClientGuard | None = None
        if min_rate is not None:
            self._guard = SlowClientGuard(
                running=self._running,
                waiting=self._waiting,
                starved=self._starved,
                cut=_take_back,
                min_rate=min_rate,
                grace=min_rate_grace,
                log=log or RateLimitedLog(logging.getLogger("sockserve.pool")),
                name=f"{name}-slow-clients",
            )
        self._run = run
        self.pool: WorkerPool[Connection] = WorkerPool(
            self._run_guarded if self._guard is not None else run,
            max_workers=max_workers,
            max_pending=max_pending,
            eager_workers=eager_workers,
            grow_after=grow_after,
            name=name,
            on_room=self._room_again,
            on_pressure=self._guard.pressure if self._guard is not None else None,
        )

    @property
    def guards_slow_clients(self) -> bool:
        """Whether accepted sockets should be :class:`GuardedSocket` (the rule needs them)."""
        return self._guard is not None

    def has_idle_worker(self) -> bool:
        """Whether a connection handed over now would start at once (``dispatch="auto"``)."""
        return self.pool.has_idle_worker()

    def _running(self) -> list[Connection]:
        return self.pool.running()

    def _waiting(self) -> int:
        return self.pool.waiting()

    def _starved(self) -> int:
        return self.pool.starved()

    def _run_guarded(self, conn: Connection) -> None:
        try:
            self._run(conn)
        finally:
            release(conn.request)  # its id may be reused by another socket

    def submit(self, conn: Connection, *, force: bool = False, later: bool = False) -> bool:
        return self.pool.submit(conn, force=force, later=later)

    def has_room(self) -> bool:
        """Back-pressure: room while a worker or a queue slot is free (always, with "reject")."""
        if not self._blocks:
            return True  # overflow="reject": accept, and refuse at once when full
        # Flag first, check second: a worker freeing up between the two sees
        # the flag and wakes the loop, so no wake-up is lost.
        self._waiting_for_room = True
        if self.pool.has_room():
            self._waiting_for_room = False
            return True
        return False

    def _room_again(self) -> None:
        if self._waiting_for_room:
            self._waiting_for_room = False
            self._wake()

    def counts(self) -> WorkerCounts:
        return WorkerCounts(*self.pool.counts())

    def close_idle(self) -> list[Connection]:
        return []

    def abort(self, conns: list[Connection]) -> list[Connection]:
        """Hand back what never reached a worker; shut the running ones' sockets down."""
        dropped = self.pool.discard_pending()
        never_ran = {id(conn) for conn in dropped}
        shut_down_sockets(conn for conn in conns if id(conn) not in never_ran)
        return dropped

    def wait_idle(self, deadline: float | None, give_up: threading.Event | None = None) -> bool:
        return wait_for_tracker(self._tracker, deadline, give_up)

    def close(self, *, wait: bool, timeout: float | None) -> None:
        self.pool.close(wait=wait, timeout=timeout)
        if self._guard is not None:
            self._guard.stop()


def _take_back(conn: Connection) -> None:
    """The guard's verdict: end ``conn`` as ``slow``; its blocked read or write returns now."""
    conn.end_as(SLOW)
    request = conn.request
    if isinstance(request, socket.socket):
        try:
            socket.socket.shutdown(request, socket.SHUT_RDWR)
        except OSError:
            pass  # ended meanwhile
