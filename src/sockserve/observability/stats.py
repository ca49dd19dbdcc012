"""The snapshot ``server.stats()`` returns.

Counters are kept by the connection tracker and the worker pool as plain
integers updated a few times per connection; taking a snapshot copies them
under one short lock, so it is cheap enough to call from a health check or a
metrics scrape as often as wanted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ServerStats"]


@dataclass(frozen=True)
class ServerStats:
    """What a server has done and is doing, at one moment."""

    #: "idle", "serving", "draining" or "closed".
    state: str
    #: Whether the serving loop is watching the listener right now (False under
    #: back-pressure, during an accept back-off, or when not serving).
    accepting: bool
    #: Requests admitted (connections for stream servers, datagrams otherwise).
    accepted: int
    #: Admitted requests not finished yet (being handled, queued or parked).
    active: int
    #: Admitted requests that have ended.
    completed: int
    #: Requests queued for a worker (pool servers).
    pending: int
    #: Requests refused, by the limit that refused them.
    rejected: dict[str, int] = field(default_factory=dict)
    #: Connections ended by a timeout (outcome ``timeout``): ``idle_timeout``, a
    #: handler's own socket timeout, a pre-handler deadline (first bytes, ...).
    timed_out: int = 0
    #: Handler exceptions other than timeouts, disconnects and peer errors (``error``).
    handler_errors: int = 0
    #: Clients that broke a limit or the protocol (``PeerError``, e.g. ``LineTooLong``).
    peer_errors: int = 0
    #: Handlers ended by the client resetting or going away (``reset``).
    disconnects: int = 0
    #: Connections a drain's deadline cut while their handler ran (``aborted``).
    aborted: int = 0
    #: Connections ``verify_request`` turned away (``denied``).
    denied: int = 0
    #: Connections a drain closed before any handler started (``closed-idle``).
    closed_idle: int = 0
    #: Connections the slow-client defence took a worker back from (``slow``).
    slow_cuts: int = 0
    #: Connections in the pre-handler stage now (waiting for first bytes, ...).
    preparing: int = 0
    #: Pre-handler steps the peer failed, by kind: "tls:timeout", "tls:not-tls",
    #: "proxy:malformed", "first-bytes:timeout"... (each also counts in its outcome).
    step_failures: dict[str, int] = field(default_factory=dict)
    #: Failed accepts by class: "transient", "resource", "unexpected".
    accept_errors: dict[str, int] = field(default_factory=dict)
    #: Worker threads (pool), or requests being handled (other strategies).
    workers: int = 0
    #: Workers handling a request now.
    busy_workers: int = 0

    @property
    def utilisation(self) -> float:
        """Busy workers as a fraction of workers (0.0 with none)."""
        return self.busy_workers / self.workers if self.workers else 0.0

    def as_dict(self) -> dict[str, object]:
        """A plain dict (for logs, JSON and metrics exporters), utilisation included."""
        data = asdict(self)
        data["utilisation"] = self.utilisation
        return data
