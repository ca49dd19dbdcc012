"""A bounded pool of worker threads: ``ThreadPoolMixIn``'s strategy.

The pool itself (hot workers, the bounded queue) is
:class:`~sockserve.strategies.workers.WorkerPool`; this adapts it to the
strategy contract: back-pressure through ``has_room`` and a wake-up when room
returns, and at a drain's deadline the queued connections handed back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker
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
    ) -> None:
        self._tracker = tracker
        self._blocks = blocks_when_full
        self._wake = wake
        self._waiting_for_room = False
        self.pool: WorkerPool[Connection] = WorkerPool(
            run,
            max_workers=max_workers,
            max_pending=max_pending,
            eager_workers=eager_workers,
            grow_after=grow_after,
            name=name,
            on_room=self._room_again,
        )

    def submit(self, conn: Connection, *, force: bool = False) -> bool:
        return self.pool.submit(conn, force=force)

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
