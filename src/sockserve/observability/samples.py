"""A server's numbers as one fixed vector of doubles: what metrics read, add up and expose.

``server.stats()`` returns open-ended dicts (refusals by reason, step failures
by kind); a Prometheus exposition, and above all the runner's shared memory
(one fixed-size slot per worker, see :mod:`sockserve.runner.metrics`), want a
fixed layout. This module is that layout: :data:`FIELDS` names every value,
:func:`sample` fills a vector from a server, and the vectors of several
workers add up field by field (:data:`GAUGE_FIELDS` are gauges, the rest
counters: a dead worker's counters are kept, its gauges dropped).

The refusal reasons and step-failure kinds are the closed sets sockserve
itself produces; anything else (a subclass's own reason) is counted under
``other``, so no label takes unbounded values.

Standard library only: the runner's workers fill their slots with it
without importing prometheus-client.
"""

from __future__ import annotations

from typing import Any

from sockserve.observability.stats import ServerStats

__all__ = [
    "ACCEPT_ERROR_KINDS",
    "EVENT_LOOPS",
    "FIELDS",
    "GAUGE_FIELDS",
    "INDEX",
    "REFUSAL_REASONS",
    "STEP_FAILURE_KINDS",
    "WORKER_CLASSES",
    "describe_server",
    "sample",
]

#: Why a connection was refused (``refused:R`` outcomes), then "other".
REFUSAL_REASONS = (
    "max_connections",
    "max_connections_per_ip",
    "ip_table_full",
    "overflow",
    "deny",
    "not_allowed",
    "proxy_untrusted",
    "other",
)
#: Pre-handler step failures (``stats().step_failures`` keys), then "other".
STEP_FAILURE_KINDS = (
    "tls:timeout",
    "tls:not-tls",
    "tls:protocol",
    "tls:no-shared-cipher",
    "tls:certificate",
    "tls:reset",
    "tls:other",
    "proxy:timeout",
    "proxy:missing",
    "proxy:malformed",
    "proxy:truncated",
    "first-bytes:timeout",
    "other",
)
#: ``stats().accept_errors`` classes (``sockserve.core.accept.AcceptErrorKind``).
ACCEPT_ERROR_KINDS = ("transient", "resource", "unexpected")
#: The counters of ``stats()`` taken as they are.
_PLAIN_COUNTERS = (
    "accepted",
    "completed",
    "timed_out",
    "handler_errors",
    "peer_errors",
    "disconnects",
    "aborted",
    "denied",
    "closed_idle",
    "slow_cuts",
)
#: Values that say how things are now (not added up over time).
GAUGE_FIELDS = (
    "active",
    "pending",
    "preparing",
    "workers",
    "busy_workers",
    "draining",
    "accepting",
)
#: Every field of a sample, in vector order.
FIELDS: tuple[str, ...] = (
    *_PLAIN_COUNTERS,
    *(f"rejected:{reason}" for reason in REFUSAL_REASONS),
    *(f"step:{kind}" for kind in STEP_FAILURE_KINDS),
    *(f"accept_errors:{kind}" for kind in ACCEPT_ERROR_KINDS),
    *GAUGE_FIELDS,
)
#: Field name -> position in the vector.
INDEX = {name: at for at, name in enumerate(FIELDS)}
#: Worker classes and event loops, by code (what a runner worker writes in its slot).
WORKER_CLASSES = ("sync", "threads", "pool", "fork", "async")
EVENT_LOOPS = ("none", "asyncio", "uvloop")


def sample(stats: ServerStats) -> list[float]:
    """The vector of ``stats`` (see the module doc)."""
    values = [0.0] * len(FIELDS)
    for name in _PLAIN_COUNTERS:
        values[INDEX[name]] = float(getattr(stats, name))
    _spread(values, "rejected:", stats.rejected, REFUSAL_REASONS)
    _spread(values, "step:", stats.step_failures, STEP_FAILURE_KINDS)
    _spread(values, "accept_errors:", stats.accept_errors, ACCEPT_ERROR_KINDS)
    values[INDEX["active"]] = float(stats.active)
    values[INDEX["pending"]] = float(stats.pending)
    values[INDEX["preparing"]] = float(stats.preparing)
    values[INDEX["workers"]] = float(stats.workers)
    values[INDEX["busy_workers"]] = float(stats.busy_workers)
    values[INDEX["draining"]] = 1.0 if stats.state == "draining" else 0.0
    values[INDEX["accepting"]] = 1.0 if stats.accepting else 0.0
    return values


def _spread(
    values: list[float], prefix: str, counts: dict[str, int], known: tuple[str, ...]
) -> None:
    for key, count in counts.items():
        name = prefix + (key if key in known else "other")
        values[INDEX[name]] += float(count)


def describe_server(server: Any) -> tuple[str, str]:
    """(worker class, event loop) of a server, as ``sockserve_build_info`` labels them."""
    # Imported here: a worker of one class need not import the others' modules.
    from sockserve.aio import AsyncMixIn  # noqa: PLC0415
    from sockserve.mixins import ForkingMixIn, ThreadingMixIn  # noqa: PLC0415
    from sockserve.pool import ThreadPoolMixIn  # noqa: PLC0415

    if isinstance(server, AsyncMixIn):
        return "async", server.event_loop_kind
    if isinstance(server, ThreadPoolMixIn):
        return "pool", "none"
    if isinstance(server, ForkingMixIn):
        return "fork", "none"
    if isinstance(server, ThreadingMixIn):
        return "threads", "none"
    return "sync", "none"
