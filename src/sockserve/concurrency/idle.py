"""Park new connections until they send something, so silence costs no thread.

With ``dispatch="readable"`` a pool server does not hand a new connection to a
worker at once: it parks it here, in one selector watched by one thread, until
the client's first byte arrives (then the connection goes to the pool) or the
first-byte timeout passes (then it is closed). A flood of clients that connect
and say nothing then costs file descriptors, not worker threads.

Every parked connection gets the same timeout, so deadlines come in the order
connections were parked: the parked table is kept in that order and the
expired ones are always at its front (no heap needed).
"""

from __future__ import annotations

import logging
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sockserve.core.wakeup import Waker

__all__ = ["FirstByteWaiter"]

_log = logging.getLogger("sockserve.pool")

Parked = tuple[Any, object]

_MAX_WAIT = 3600.0


class FirstByteWaiter:
    """One thread that hands connections on when they become readable or time out."""

    def __init__(
        self,
        *,
        on_readable: Callable[[Any, object], None],
        on_timeout: Callable[[Any, object], None],
        timeout: float | None,
        name: str = "sockserve-first-byte",
    ) -> None:
        self._on_readable = on_readable
        self._on_timeout = on_timeout
        self._timeout = timeout
        self._name = name
        self._lock = threading.Lock()
        self._inbox: deque[Parked] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._waker = Waker()
        self._leftovers: list[Parked] = []

    def park(self, request: Any, client_address: object) -> bool:
        """Watch ``request`` until it is readable; False if the waiter is stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._inbox.append((request, client_address))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._waker.wake()
        return True

    def stop(self) -> list[Parked]:
        """Stop watching; return the connections still parked (the caller closes them)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            self._waker.wake()
            thread.join()
        self._waker.close()
        leftovers, self._leftovers = self._leftovers, []
        with self._lock:
            leftovers.extend(self._inbox)
            self._inbox.clear()
        return leftovers

    def _loop(self) -> None:
        # fd -> (request, address, deadline), in parking order (= deadline order).
        parked: dict[int, tuple[Any, object, float]] = {}
        selector = selectors.DefaultSelector()
        selector.register(self._waker, selectors.EVENT_READ)
        try:
            while not self._stopping:
                self._take_inbox(selector, parked)
                wait = None
                if parked and self._timeout is not None:
                    first_deadline = next(iter(parked.values()))[2]
                    # Capped: poll() cannot wait longer than 2**31 ms; we just wake and re-check.
                    wait = min(_MAX_WAIT, max(0.0, first_deadline - time.monotonic()))
                for key, _events in selector.select(wait):
                    if key.fileobj is self._waker:
                        self._waker.drain()
                        continue
                    fd = key.fd
                    selector.unregister(fd)
                    request, address, _deadline = parked.pop(fd)
                    self._hand_on(self._on_readable, request, address)
                self._expire(selector, parked)
        finally:
            for fd, (request, address, _deadline) in parked.items():
                selector.unregister(fd)
                self._leftovers.append((request, address))
            selector.close()

    def _take_inbox(
        self, selector: selectors.BaseSelector, parked: dict[int, tuple[Any, object, float]]
    ) -> None:
        deadline = time.monotonic() + (self._timeout or 0.0)
        while True:
            with self._lock:
                if not self._inbox:
                    return
                request, address = self._inbox.popleft()
            try:
                fd = request.fileno()
                selector.register(fd, selectors.EVENT_READ)
            except (OSError, ValueError):
                # Closed before we could watch it (a drain, a reset): let the
                # readable path run so the request is ended and released.
                self._hand_on(self._on_readable, request, address)
                continue
            parked[fd] = (request, address, deadline)

    def _expire(
        self, selector: selectors.BaseSelector, parked: dict[int, tuple[Any, object, float]]
    ) -> None:
        if self._timeout is None:
            return
        now = time.monotonic()
        while parked:
            fd, (request, address, deadline) = next(iter(parked.items()))
            if deadline > now:
                return
            del parked[fd]
            selector.unregister(fd)
            self._hand_on(self._on_timeout, request, address)

    def _hand_on(
        self, callback: Callable[[Any, object], None], request: Any, address: object
    ) -> None:
        try:
            callback(request, address)
        except Exception:
            # The callbacks end requests and count them; an error there must not
            # stop the thread every parked connection depends on.
            _log.exception("%s: handing on a connection failed", self._name)
