"""Logger names and a rate limiter for log lines that an attacker or an outage can repeat.

Every logger of the package lives under the ``sockserve`` tree so that one
``logging.getLogger("sockserve").setLevel(...)`` tunes all of it. Lines that a
flood can trigger (accept failures, refused connections) go through
:class:`RateLimitedLog`, so a million failures cost a handful of lines, each
saying how many were suppressed since the previous one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["RateLimitedLog", "describe_address", "server_logger"]

#: The logger behind ``BaseServer.handle_error`` and the accept loop.
server_logger = logging.getLogger("sockserve.server")


def describe_address(address: object) -> str:
    """Render a peer or bound address the way an operator reads it in a log line.

    ``("127.0.0.1", 80)`` -> ``127.0.0.1:80``; IPv6 gets brackets; a Unix path is
    shown as ``unix:PATH`` and an unnamed Unix peer as ``unix:<unnamed>``.
    """
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if isinstance(host, str) and ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    if isinstance(address, bytes):
        address = address.decode("utf-8", "backslashreplace")
    if isinstance(address, str):
        if not address:
            return "unix:<unnamed>"
        if address.startswith("\0"):
            return "unix:@" + address[1:]
        return "unix:" + address
    if address is None:
        return "unix:<unnamed>"
    return repr(address)


class RateLimitedLog:
    """Emit at most one line per key per ``interval`` seconds, counting the rest.

    Thread-safe. Memory is bounded by ``max_keys``: when full, the oldest key is
    forgotten (which at worst lets one extra line through).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        *,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval!r}")
        self._logger = logger
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [time of the last emitted line, lines suppressed since]
        self._state: dict[Hashable, list[float]] = {}

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``key`` was logged within the interval.

        Returns whether the line was emitted (tests and callers that count use it).
        """
        now = self._clock()
        with self._lock:
            entry = self._state.get(key)
            if entry is not None and now - entry[0] < self._interval:
                entry[1] += 1
                return False
            suppressed = int(entry[1]) if entry is not None else 0
            if entry is None and len(self._state) >= self._max_keys:
                self._state.pop(next(iter(self._state)))
            self._state[key] = [now, 0]
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        self._logger.log(level, msg, *args)
        return True
