"""Tasks on one event loop thread: ``AsyncMixIn``'s strategy.

Each admitted connection becomes a task running the server's connection
coroutine on one event loop thread (uvloop when installed), so a connection
that waits costs a coroutine and a descriptor, not a thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker
from sockserve.strategies.base import WorkerCounts, shut_down_sockets, wait_for_tracker
from sockserve.strategies.eventloop import EventLoopThread

__all__ = ["AsyncStrategy"]

ServeCoroutine = Callable[[Connection], Coroutine[Any, Any, None]]


class AsyncStrategy:
    """Serves each connection as a task on one event loop thread."""

    background = True
    prepares_in_place = False
    #: The loop's sockets are non-blocking: the kernel's timeouts would do nothing.
    blocking_sockets = False

    def __init__(
        self, serve: ServeCoroutine, tracker: ConnectionTracker, *, kind: str, name: str
    ) -> None:
        self._serve = serve
        self._tracker = tracker
        self.loop_thread = EventLoopThread(name=name, kind=kind)

    def submit(self, conn: Connection, *, force: bool = False) -> bool:
        self.loop_thread.submit(self._serve, conn)
        return True

    def has_room(self) -> bool:
        return True  # bounded by max_connections

    def counts(self) -> WorkerCounts:
        tasks = self.loop_thread.running_tasks
        return WorkerCounts(tasks, tasks, 0)

    def close_idle(self) -> list[Connection]:
        return []

    def abort(self, conns: list[Connection]) -> list[Connection]:
        """Shut the sockets down (reads end), then cancel the handlers."""
        shut_down_sockets(conns)
        self.loop_thread.cancel_all()
        return []

    def wait_idle(self, deadline: float | None, give_up: threading.Event | None = None) -> bool:
        return wait_for_tracker(self._tracker, deadline, give_up)

    def close(self, *, wait: bool, timeout: float | None) -> None:
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            wait_for_tracker(self._tracker, deadline, None)
        self.loop_thread.stop()
