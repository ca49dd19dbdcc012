"""Who is connected: admission limits, the in-flight table and the counters behind ``stats()``.

One lock guards it all; it is taken a few times per connection (admit,
release, the odd counter) and never per byte, so it stays on in production.
The in-flight table maps ``id(request)`` to the request, which is what a
drain needs to abort whatever is still running at its deadline.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["ConnectionTracker"]

#: Distinct client addresses the per-IP table may hold at once. Entries exist only
#: while an address has connections, so this is reached only under a wide flood.
MAX_TRACKED_IPS = 65_536


def _peer_ip(address: object) -> str | None:
    """The IP of an (host, port, ...) address; None for Unix peers, which have no IP."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return address[0]
    return None


class ConnectionTracker:
    """Admits or refuses new requests and remembers the ones in flight."""

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_tracked_ips: int = MAX_TRACKED_IPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.max_tracked_ips = max_tracked_ips
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._in_flight: dict[int, tuple[Any, object, str | None, float]] = {}
        self._per_ip: dict[str, int] = {}
        self.accepted = 0
        self.completed = 0
        self.rejected: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def admit(self, request: Any, client_address: object) -> str | None:
        """Record a new request; return None if admitted, else the reason for refusing it."""
        per_ip_limit = self.max_connections_per_ip
        ip = _peer_ip(client_address) if per_ip_limit is not None else None
        with self._lock:
            reason = None
            if self.max_connections is not None and len(self._in_flight) >= self.max_connections:
                reason = "max_connections"
            elif ip is not None and per_ip_limit is not None:
                count = self._per_ip.get(ip, 0)
                if count >= per_ip_limit:
                    reason = "max_connections_per_ip"
                elif count == 0 and len(self._per_ip) >= self.max_tracked_ips:
                    reason = "ip_table_full"
                else:
                    self._per_ip[ip] = count + 1
            if reason is not None:
                self.rejected[reason] += 1
                self._changed.notify_all()
                return reason
            self._in_flight[id(request)] = (request, client_address, ip, self._clock())
            self.accepted += 1
            self._changed.notify_all()
        return None

    def release(self, request: Any) -> None:
        """The request is over (handled, refused or aborted). Idempotent."""
        with self._lock:
            entry = self._in_flight.pop(id(request), None)
            if entry is None:
                return
            ip = entry[2]
            if ip is not None:
                left = self._per_ip[ip] - 1
                if left:
                    self._per_ip[ip] = left
                else:
                    del self._per_ip[ip]
            self.completed += 1
            self._changed.notify_all()

    def reject_admitted(self, request: Any, reason: str) -> None:
        """An admitted request is refused after all (a full pool): release and count it."""
        self.release(request)
        with self._lock:
            # It never ran: count it as rejected, like a refusal, not as accepted.
            self.completed -= 1
            self.accepted -= 1
            self.rejected[reason] += 1

    def count(self, event: str) -> None:
        """Count an event: "timed_out", "handler_errors", "peer_errors", ..."""
        with self._lock:
            self.events[event] += 1
            self._changed.notify_all()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def in_flight_requests(self) -> list[tuple[Any, object]]:
        """A snapshot of the requests in flight and their client addresses."""
        with self._lock:
            return [(entry[0], entry[1]) for entry in self._in_flight.values()]

    def lookup(self, request: Any) -> tuple[object, float] | None:
        """(client address, admission time) of a request in flight, else None."""
        entry = self._in_flight.get(id(request))
        return (entry[1], entry[3]) if entry is not None else None

    def wait_until(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Block until ``predicate()`` holds (re-checked at every change) or the deadline.

        Returns the predicate's last value. The predicate runs under the lock
        and must not call back into the tracker's locking methods.
        """
        with self._changed:
            while not predicate():
                if deadline is None:
                    self._changed.wait()
                    continue
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                # Capped: Condition.wait overflows on huge timeouts (inf means "no deadline").
                self._changed.wait(min(remaining, 3600.0))
            return True

    def wait_for_change(self, timeout: float) -> None:
        """Block until the next admit, release or count, or ``timeout`` seconds."""
        with self._changed:
            self._changed.wait(timeout)

    def snapshot(self) -> tuple[int, int, int, dict[str, int], dict[str, int]]:
        """(accepted, in flight, completed, rejected by reason, events), read consistently."""
        with self._lock:
            return (
                self.accepted,
                len(self._in_flight),
                self.completed,
                dict(self.rejected),
                dict(self.events),
            )

    def poke(self) -> None:
        """Wake every ``wait_until`` so it re-checks (used to cut a drain short)."""
        with self._lock:
            self._changed.notify_all()
