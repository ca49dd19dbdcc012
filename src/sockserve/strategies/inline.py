"""Inline: one connection at a time, served on the serving thread (the stdlib's base servers)."""

from __future__ import annotations

from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker
from sockserve.strategies.base import OneTaskPerConnection, RunConnection

__all__ = ["InlineStrategy"]


class InlineStrategy(OneTaskPerConnection):
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

    def close(self, *, wait: bool, timeout: float | None) -> None:
        """Nothing of its own to release."""
