"""Inline: one connection at a time, served on the serving thread (the stdlib's base servers)."""

from __future__ import annotations

import threading

from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker
from sockserve.strategies.base import (
    RunConnection,
    WorkerCounts,
    shut_down_sockets,
    wait_for_tracker,
)

__all__ = ["InlineStrategy"]


class InlineStrategy:
    """Serves each connection to its end before the loop accepts the next one."""

    background = False
    prepares_in_place = True
    blocking_sockets = True
    guards_slow_clients = False

    def __init__(self, run: RunConnection, tracker: ConnectionTracker) -> None:
        self._run = run
        self._tracker = tracker

    def submit(self, conn: Connection, *, force: bool = False, later: bool = False) -> bool:
        self._run(conn)
        return True

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

    def close(self, *, wait: bool, timeout: float | None) -> None:
        """Nothing of its own to release."""
