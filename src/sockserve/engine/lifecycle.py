"""A server's life in one place: its states, the allowed moves, and the drain report.

::

    idle --serve_forever--> serving --shutdown--> idle
      \\                       |
       \\----- drain() -------+--> draining --server_close--> closed
        \\------------------- server_close --------------------^
    closed --serve_forever--> serving   (unless the server's close is final)

* ``idle``: bound and listening (the kernel queues clients) but no loop runs.
* ``serving``: ``serve_forever`` is running. ``shutdown()`` returns to idle,
  as in the stdlib, and the server may serve again.
* ``draining``: ``drain()`` stopped the loop and closed the listener; requests
  in flight get until the deadline to finish. Handlers can test
  ``server.draining`` (an ``Event``) to end long sessions politely.
* ``closed``: ``server_close()`` ran. Not terminal for the stdlib-named
  classes: ``socketserver`` checks no state, and programs rely on serving
  again after ``server_close()`` once ``self.socket`` holds a usable socket
  (werkzeug's reloader closes the socket its constructor made, puts an
  inherited descriptor there and calls ``serve_forever``). The state then
  goes back to serving; it describes, it does not forbid.
* A server whose ``server_close`` tears down what serving needs (the pool's
  worker threads, the async strategy's event loop) gives ``Lifecycle`` a
  ``final_close`` reason: closed is terminal for it, and the error says why.

Rules: moves not in ``_ALLOWED`` raise ``RuntimeError`` (draining a closed
server, serving one that is draining or whose close is final); every move
happens under one lock.
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
    # Serving again after server_close(), as the stdlib allows (see the module doc).
    State.CLOSED: frozenset({State.CLOSED, State.SERVING}),
}


class Lifecycle:
    """The current state, its transitions, and the events handlers and drains watch."""

    def __init__(self, final_close: str | None = None) -> None:
        self._lock = threading.Lock()
        self._state = State.IDLE
        #: Why a closed server cannot serve again; None: it can (the stdlib's rule).
        self._final_close = final_close
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
            final = old is State.CLOSED and new is not old and self._final_close is not None
            if new not in _ALLOWED[old] or final:
                why = f" ({self._final_close})" if final else ""
                raise RuntimeError(f"server is {old.value}: cannot become {new.value}{why}")
            if old is State.CLOSED and new is State.SERVING:
                # Serving again on a replaced socket: whatever drain ended in
                # that close is over, so handlers must not see it as pending.
                self.draining.clear()
                self.force.clear()
            self._state = new
        return old

    def loop_stopped(self) -> None:
        """``serve_forever`` returned: back to idle unless a drain or close moved on."""
        with self._lock:
            if self._state is State.SERVING:
                self._state = State.IDLE
