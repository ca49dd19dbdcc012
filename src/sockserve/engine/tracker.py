"""Who is connected: admission limits, the table of connections in flight, the counters.

One lock guards it all; it is taken a few times per connection (admit,
release, the odd counter) and never per byte, so it stays on in production.

The table of connections in flight is the one place that maps a request to
its :class:`~sockserve.engine.connection.Connection`. The stdlib hooks pass
the request around (``shutdown_request(request)``), and a plain socket has
``__slots__``, so nothing can be hung on it; the table is keyed by the
request's identity. That is safe because the Connection holds the request:
while it is in the table the object lives and its ``id`` cannot be reused.
When a step replaces the request object (a TLS handshake wraps the socket in
an ``SSLSocket`` and detaches the original), :meth:`ConnectionTracker.rekey`
re-points the entry, so lookups by the new object find the same Connection.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from sockserve._types import Request
from sockserve.engine.connection import COUNTER_OF, Connection, peer_ip

__all__ = ["ConnectionTracker"]

#: Distinct client addresses the per-IP table may hold at once. Entries exist only
#: while an address has connections, so this is reached only under a wide flood.
MAX_TRACKED_IPS = 65_536


class ConnectionTracker:
    """Admits or refuses new connections and remembers the ones in flight."""

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
        #: Peers whose own address takes no per-IP slot at admission: the
        #: trusted proxies, whose connections are counted under the real
        #: client once their PROXY header is read (``readdress``). Without it
        #: every client behind a proxy would share the proxy's slots.
        self.per_ip_exempt: Callable[[object], bool] | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        #: Threads in wait_until / wait_for_change: without any, a change
        #: notifies nobody (Condition.notify_all costs ~2 us even then).
        self._waiters = 0
        self._in_flight: dict[int, Connection] = {}
        self._per_ip: dict[str, int] = {}
        self.accepted = 0
        self.completed = 0
        self.rejected: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def admit(self, conn: Connection) -> str | None:
        """Record a new connection; return None if admitted, else the limit that refused it."""
        per_ip_limit = self.max_connections_per_ip
        ip = peer_ip(conn.client_address) if per_ip_limit is not None else None
        exempt = self.per_ip_exempt
        if ip is not None and exempt is not None and exempt(conn.client_address):
            ip = None
        with self._lock:
            reason = None
            if self.max_connections is not None and len(self._in_flight) >= self.max_connections:
                reason = "max_connections"
            elif ip is not None and per_ip_limit is not None:
                reason = self._take_ip_slot(ip, per_ip_limit)
            if reason is not None:
                self.rejected[reason] += 1
                self._notify()
                return reason
            conn.ip = ip
            conn.admitted_at = self._clock()
            self._in_flight[id(conn.request)] = conn
            self.accepted += 1
            self._notify()
        return None

    def _take_ip_slot(self, ip: str, limit: int) -> str | None:
        """Count one more connection of ``ip`` (lock held); the refusal reason if over."""
        count = self._per_ip.get(ip, 0)
        if count >= limit:
            return "max_connections_per_ip"
        if count == 0 and len(self._per_ip) >= self.max_tracked_ips:
            return "ip_table_full"
        self._per_ip[ip] = count + 1
        return None

    def _drop_ip_slot(self, ip: str) -> None:
        left = self._per_ip[ip] - 1
        if left:
            self._per_ip[ip] = left
        else:
            del self._per_ip[ip]

    def readdress(self, conn: Connection, client_address: object) -> str | None:
        """Move an admitted connection to its real client address (after a PROXY header).

        The per-IP count moves from the old address to the new one; returns the
        refusal reason if the new address is over its limit (the connection
        then keeps its old entry, and the caller refuses it: ``unadmit``
        counts the refusal).
        """
        limit = self.max_connections_per_ip
        if limit is None and conn.ip is None:
            conn.client_address = client_address  # no per-IP table to move in: no lock
            return None
        new_ip = peer_ip(client_address) if limit is not None else None
        with self._lock:
            if new_ip is not None and limit is not None and new_ip != conn.ip:
                reason = self._take_ip_slot(new_ip, limit)
                if reason is not None:
                    return reason
            if conn.ip is not None and new_ip != conn.ip:
                self._drop_ip_slot(conn.ip)
            conn.ip = new_ip
        conn.client_address = client_address
        return None

    def release(self, conn: Connection) -> bool:
        """The connection is over: count its outcome. Idempotent: True the first time."""
        with self._lock:
            if self._in_flight.pop(id(conn.request), None) is None:
                return False
            if conn.ip is not None:
                self._drop_ip_slot(conn.ip)
            self.completed += 1
            counter = COUNTER_OF.get(conn.outcome) if conn.outcome is not None else None
            if counter is not None:
                self.events[counter] += 1
            self._notify()
        return True

    def unadmit(self, conn: Connection, reason: str) -> None:
        """An admitted connection is refused after all (a full pool): count a refusal instead."""
        with self._lock:
            if self._in_flight.pop(id(conn.request), None) is None:
                return
            if conn.ip is not None:
                self._drop_ip_slot(conn.ip)
            # It never ran: count it as refused, like a refusal at the door, not as accepted.
            self.accepted -= 1
            self.rejected[reason] += 1
            self._notify()

    def find(self, request: Request) -> Connection | None:
        """The connection in flight whose request is ``request``, if any."""
        return self._in_flight.get(id(request))

    def rekey(self, conn: Connection, request: Request) -> None:
        """Make ``request`` (which replaces ``conn.request``) the connection's request."""
        with self._lock:
            if self._in_flight.pop(id(conn.request), None) is not None:
                self._in_flight[id(request)] = conn
            conn.request = request

    def count(self, event: str) -> None:
        """Count an event: "timed_out", "handler_errors", "peer_errors", ..."""
        with self._lock:
            self.events[event] += 1
            self._notify()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def connections(self) -> list[Connection]:
        """A snapshot of the connections in flight."""
        with self._lock:
            return list(self._in_flight.values())

    def wait_until(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Block until ``predicate()`` holds (re-checked at every change) or the deadline.

        Returns the predicate's last value. The predicate runs under the lock
        and must not call back into the tracker's locking methods.
        """
        with self._changed:
            self._waiters += 1
            try:
                while not predicate():
                    if deadline is None:
                        self._changed.wait()
                        continue
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return False
                    # Capped: Condition.wait overflows on huge timeouts (inf: no deadline).
                    self._changed.wait(min(remaining, 3600.0))
                return True
            finally:
                self._waiters -= 1

    def wait_for_change(self, timeout: float) -> None:
        """Block until the next admit, release or count, or ``timeout`` seconds."""
        with self._changed:
            self._waiters += 1
            try:
                self._changed.wait(timeout)
            finally:
                self._waiters -= 1

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

    def _notify(self) -> None:
        """Wake the threads waiting for a change, if any (lock held)."""
        if self._waiters:
            self._changed.notify_all()

    def poke(self) -> None:
        """Wake every ``wait_until`` so it re-checks (used to cut a drain short)."""
        with self._lock:
            self._notify()
