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
from collections.abc import Callable, Hashable, Mapping

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


def _describe_key(key: Hashable) -> str:
    if isinstance(key, tuple):
        return " ".join(str(part) for part in key if part is not None)
    return str(key)


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

    def log(
        self,
        level: int,
        key: Hashable,
        msg: str,
        *args: object,
        exc_info: BaseException | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        """Log ``msg % args`` unless ``key`` was logged within the interval.

        ``exc_info`` and ``extra`` go to the logger with the line (the first
        line of a kind keeps its traceback). Returns whether the line was
        emitted (tests and callers that count use it).
        """
        now = self._clock()
        with self._lock:
            entry = self._state.get(key)
            if entry is not None and now - entry[0] < self._interval:
                entry[1] += 1
                self._pending = True
                return False
            suppressed = int(entry[1]) if entry is not None else 0
            if entry is None and len(self._state) >= self._max_keys:
                self._state.pop(next(iter(self._state)))
            self._state[key] = [now, 0]
        if suppressed:
            msg += " (%d more like this suppressed)"
            args = (*args, suppressed)
        self._logger.log(level, msg, *args, exc_info=exc_info, extra=extra)
        return True

    _pending = False

    def flush(self) -> None:
        """Say how many lines each quiet key suppressed, once its interval is over.

        A storm that stops would otherwise never tell how many lines it cost.
        Cheap when nothing is suppressed (one attribute read): call it often.
        """
        if not self._pending:
            return
        now = self._clock()
        reports: list[tuple[Hashable, int]] = []
        with self._lock:
            self._pending = False
            for key, entry in self._state.items():
                if entry[1]:
                    if now - entry[0] >= self._interval:
                        reports.append((key, int(entry[1])))
                        entry[0], entry[1] = now, 0
                    else:
                        self._pending = True
        for key, count in reports:
            self._logger.log(
                logging.INFO, "%d more like %s suppressed in the last %.0f s", count,
                _describe_key(key), self._interval,
            )  # fmt: skip
