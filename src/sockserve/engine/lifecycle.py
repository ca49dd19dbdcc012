"""A server's life in one place: its states, the allowed moves, and the drain report.

::

    idle --serve_forever--> serving --shutdown--> idle
      \\                       |
       \\----- drain() -------+--> draining --server_close--> closed
        \\------------------- server_close --------------------^

* ``idle``: bound and listening (the kernel queues clients) but no loop runs.
* ``serving``: ``serve_forever`` is running. ``shutdown()`` returns to idle,
  as in the stdlib, and the server may serve again.
* ``draining``: ``drain()`` stopped the loop and closed the listener; requests
  in flight get until the deadline to finish. Handlers can test
  ``server.draining`` (an ``Event``) to end long sessions politely.
* ``closed``: ``server_close()`` ran. Terminal.

Rules: moves not in ``_ALLOWED`` raise ``RuntimeError`` (serving a closed
server is a programming error); every move happens under one lock.
"""

from __future__ import annotations

import threading
from enum import Enum

__all__ = ["Lifecycle", "State"]


class State(Enum):
    IDLE = "idle"
    SERVING = "serving"
    DRAINING = "draining"
    CLOSED = "closed"


_ALLOWED: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.SERVING, State.DRAINING, State.CLOSED}),
    State.SERVING: frozenset({State.IDLE, State.DRAINING, State.CLOSED}),
    # serve_forever returning during a drain keeps the server draining.
    State.DRAINING: frozenset({State.DRAINING, State.CLOSED}),
    State.CLOSED: frozenset({State.CLOSED}),
}


class Lifecycle:
    """The current state, its transitions, and the events handlers and drains watch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = State.IDLE
        #: Set by a drain once it has stopped accepting: handlers may finish
        #: early and politely.
        self.draining = threading.Event()
        #: Set to cut an ongoing drain short (a second SIGTERM, say).
        self.force = threading.Event()

    @property
    def state(self) -> State:
        return self._state

    def move(self, new: State) -> State:
        """Move to ``new``; return the previous state. Raises RuntimeError if not allowed."""
        with self._lock:
            old = self._state
            if new not in _ALLOWED[old]:
                raise RuntimeError(f"server is {old.value}: cannot become {new.value}")
            self._state = new
        return old

    def loop_stopped(self) -> None:
        """``serve_forever`` returned: back to idle unless a drain or close moved on."""
        with self._lock:
            if self._state is State.SERVING:
                self._state = State.IDLE
