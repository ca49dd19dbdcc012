"""Prometheus exposition of sockserve servers (needs ``pip install 'sockserve[metrics]'``).

One call registers one or several servers with a prometheus-client registry::

    from sockserve.observability.metrics import register
    register(server_a, server_b, port=9100)   # port: also serve /metrics on it

Counters are not kept twice: a custom collector reads each server's own
counters (``server.stats()``, one short lock) when Prometheus scrapes, so a
server nobody scrapes pays nothing for them. The histograms (connection
duration, bytes in and out) cannot be read afterwards; ``register`` gives
each server a :class:`~sockserve.observability.recorder.RequestRecorder`,
which costs a clock read, a ``getsockopt`` and a few additions per
connection (measured in docs/observability.md).

The same :func:`families` builds the metric families for the runner's
``--metrics-bind`` (:mod:`sockserve.runner.metrics`), from numbers added up
over worker processes instead of read from live servers: one list of names,
one meaning. Conventions: the ``sockserve_`` prefix, ``_total`` counters,
seconds and bytes, one ``listener`` label (never a client address).

This module imports prometheus-client at import time; nothing in the core
imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sockserve.observability.logs import describe_address
from sockserve.observability.recorder import Histogram, RequestRecorder
from sockserve.observability.samples import (
    ACCEPT_ERROR_KINDS,
    INDEX,
    REFUSAL_REASONS,
    STEP_FAILURE_KINDS,
    describe_server,
    sample,
)

__all__ = ["ListenerNumbers", "MasterNumbers", "ServerCollector", "families", "register"]

#: Counters of a sample, each one family: (metric name without _total, field, help).
_COUNTERS = (
    ("sockserve_connections_accepted", "accepted", "Connections admitted (datagrams for UDP)."),
    ("sockserve_connections_completed", "completed", "Admitted connections that have ended."),
    ("sockserve_handler_errors", "handler_errors", "Handler exceptions (bugs, not peers)."),
    (
        "sockserve_peer_errors",
        "peer_errors",
        "Clients that broke a limit or the protocol (PeerError).",
    ),
    ("sockserve_client_disconnects", "disconnects", "Handlers ended by the client going away."),
    ("sockserve_connections_aborted", "aborted", "Connections a drain's deadline cut."),
    ("sockserve_connections_denied", "denied", "Connections verify_request turned away."),
    (
        "sockserve_connections_closed_idle",
        "closed_idle",
        "Connections a drain closed before any handler started.",
    ),
    (
        "sockserve_slow_client_cuts",
        "slow_cuts",
        "Connections the slow-client defence took a worker back from.",
    ),
)
_HISTOGRAMS = (
    (
        "sockserve_connection_duration_seconds",
        "duration",
        "Seconds from admission to the end of a connection (queue, pre-handler steps, handler).",
    ),
    ("sockserve_connection_received_bytes", "bytes_in", "Bytes received per TCP connection."),
    ("sockserve_connection_sent_bytes", "bytes_out", "Bytes sent per TCP connection."),
)


#: Pre-handler steps with a deadline of their own (their ``step:S:timeout`` counters).
_TIMED_STEPS = ("first-bytes", "tls", "proxy")
#: Why the master replaces a worker (every cause is exposed, zeros included).
RESTART_CAUSES = ("crashed", "killed", "recycled", "timeout")


@dataclass
class ListenerNumbers:
    """One listener's numbers: a sample vector (``samples.FIELDS``) and its histograms."""

    values: Sequence[float]
    histograms: Mapping[str, Histogram] = field(default_factory=dict)


@dataclass
class MasterNumbers:
    """The runner master's own numbers (``--workers N``)."""

    workers_alive: int
    restarts: Mapping[str, int]
    reloads: Mapping[str, int]
    boot_failures: int
    healthy: bool


def families(
    listeners: Mapping[str, ListenerNumbers],
    build: Iterable[tuple[str, str, str]],
    master: MasterNumbers | None = None,
) -> Iterator[Metric]:
    """Every sockserve metric family for these numbers (see the module doc).

    ``build``: (version, worker class, event loop) triples for ``sockserve_build_info``.
    """
    info = GaugeMetricFamily(
        "sockserve_build_info",
        "sockserve's version, worker class and event loop (value 1).",
        labels=["version", "worker_class", "event_loop"],
    )
    for triple in sorted(set(build)):
        info.add_metric(list(triple), 1.0)
    yield info
    for name, key, text in _COUNTERS:
        counter = CounterMetricFamily(name, text, labels=["listener"])
        for listener, numbers in listeners.items():
            counter.add_metric([listener], numbers.values[INDEX[key]])
        yield counter
    yield from _labelled(listeners)
    yield from _gauges(listeners)
    for name, key, text in _HISTOGRAMS:
        histogram = HistogramMetricFamily(name, text, labels=["listener"])
        for listener, numbers in listeners.items():
            recorded = numbers.histograms.get(key)
            if recorded is not None:
                histogram.add_metric([listener], recorded.cumulative(), recorded.total)
        yield histogram
    if master is not None:
        yield from _master(master)


def _labelled(listeners: Mapping[str, ListenerNumbers]) -> Iterator[Metric]:
    refused = CounterMetricFamily(
        "sockserve_connections_refused",
        "Connections refused before admission, by the limit or rule that refused them.",
        labels=["listener", "reason"],
    )
    accept_errors = CounterMetricFamily(
        "sockserve_accept_errors",
        "Failed accept() calls by class: transient, resource (EMFILE...), unexpected.",
        labels=["listener", "kind"],
    )
    backoffs = CounterMetricFamily(
        "sockserve_accept_backoffs",
        "Pauses of the listener after a resource shortage or an unexpected accept error.",
        labels=["listener"],
    )
    tls = CounterMetricFamily(
        "sockserve_tls_handshake_failures",
        "TLS handshakes that failed, by kind (timeout, not-tls, certificate...).",
        labels=["listener", "kind"],
    )
    proxy = CounterMetricFamily(
        "sockserve_proxy_header_errors",
        "PROXY protocol headers that failed, by kind (malformed, missing, timeout...).",
        labels=["listener", "kind"],
    )
    timed_out = CounterMetricFamily(
        "sockserve_connections_timed_out",
        "Connections ended by a timeout, by kind: handler (idle_timeout or the handler's own), "
        "first-bytes, tls (handshake), proxy (header).",
        labels=["listener", "kind"],
    )
    first_bytes = CounterMetricFamily(
        "sockserve_first_byte_timeouts",
        "Connections that sent nothing within first_byte_timeout.",
        labels=["listener"],
    )
    for listener, numbers in listeners.items():
        values = numbers.values
        for reason in REFUSAL_REASONS:
            refused.add_metric([listener, reason], values[INDEX[f"rejected:{reason}"]])
        for kind in ACCEPT_ERROR_KINDS:
            accept_errors.add_metric([listener, kind], values[INDEX[f"accept_errors:{kind}"]])
        backoffs.add_metric(
            [listener],
            values[INDEX["accept_errors:resource"]] + values[INDEX["accept_errors:unexpected"]],
        )
        # Step timeouts count in timed_out too: the rest are the handlers' own.
        steps = {step: values[INDEX[f"step:{step}:timeout"]] for step in _TIMED_STEPS}
        handler = max(0.0, values[INDEX["timed_out"]] - sum(steps.values()))
        timed_out.add_metric([listener, "handler"], handler)
        for step, count in steps.items():
            timed_out.add_metric([listener, step], count)
        for kind in STEP_FAILURE_KINDS:
            step, _, what = kind.partition(":")
            count = values[INDEX[f"step:{kind}"]]
            if step == "tls":
                tls.add_metric([listener, what], count)
            elif step == "proxy":
                proxy.add_metric([listener, what], count)
            elif step == "first-bytes":
                first_bytes.add_metric([listener], count)
    yield from (refused, timed_out, accept_errors, backoffs, tls, proxy, first_bytes)


def _gauges(listeners: Mapping[str, ListenerNumbers]) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "sockserve_connections_active",
        "Admitted connections not finished yet (handled, queued or being prepared).",
        labels=["listener"],
    )
    preparing = GaugeMetricFamily(
        "sockserve_connections_preparing",
        "Connections in the pre-handler stage (first bytes, PROXY header, TLS handshake).",
        labels=["listener"],
    )
    workers = GaugeMetricFamily(
        "sockserve_pool_workers",
        "Worker threads of the pool (or requests being handled, for other strategies), by state.",
        labels=["listener", "state"],
    )
    pending = GaugeMetricFamily(
        "sockserve_pool_pending",
        "Connections queued for a pool worker.",
        labels=["listener"],
    )
    draining = GaugeMetricFamily(
        "sockserve_draining",
        "1 while the listener drains (stopped accepting, finishing connections in flight).",
        labels=["listener"],
    )
    for listener, numbers in listeners.items():
        values = numbers.values
        busy = values[INDEX["busy_workers"]]
        active.add_metric([listener], values[INDEX["active"]])
        preparing.add_metric([listener], values[INDEX["preparing"]])
        workers.add_metric([listener, "busy"], busy)
        workers.add_metric([listener, "idle"], max(0.0, values[INDEX["workers"]] - busy))
        pending.add_metric([listener], values[INDEX["pending"]])
        draining.add_metric([listener], min(1.0, values[INDEX["draining"]]))
    yield from (active, preparing, workers, pending, draining)


def _master(master: MasterNumbers) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "sockserve_worker_processes", "Worker processes alive.", value=master.workers_alive
    )
    restarts = CounterMetricFamily(
        "sockserve_worker_restarts",
        "Workers the master replaced, by cause (crashed, killed, timeout, recycled).",
        labels=["cause"],
    )
    for cause in sorted({*RESTART_CAUSES, *master.restarts}):
        restarts.add_metric([cause], master.restarts.get(cause, 0))
    yield restarts
    reloads = CounterMetricFamily(
        "sockserve_reloads", "Reloads (SIGHUP), by result: ok or failed.", labels=["result"]
    )
    for result in sorted({"ok", "failed", *master.reloads}):
        reloads.add_metric([result], master.reloads.get(result, 0))
    yield reloads
    yield CounterMetricFamily(
        "sockserve_worker_boot_failures",
        "Workers that died before they served (a reload's new worker, or the first boot).",
        value=master.boot_failures,
    )
    yield GaugeMetricFamily(
        "sockserve_healthy",
        "1 while /healthz answers 200; 0 in the shutdown delay and the drain.",
        value=1.0 if master.healthy else 0.0,
    )


def _version() -> str:
    from sockserve import __version__  # noqa: PLC0415  (sockserve imports nothing of ours)

    return __version__


class ServerCollector(Collector):
    """Reads servers' counters and recorders at scrape time (see the module doc)."""

    def __init__(self, servers: Mapping[str, Any]) -> None:
        self.servers = dict(servers)
        for server in self.servers.values():
            if server._pipeline.recorder is None:
                server._pipeline.recorder = RequestRecorder()

    def collect(self) -> Iterator[Metric]:
        numbers = {}
        for listener, server in self.servers.items():
            recorder = server._pipeline.recorder
            numbers[listener] = ListenerNumbers(
                sample(server.stats()),
                recorder.histograms() if recorder is not None else {},
            )
        version = _version()
        build = [(version, *describe_server(server)) for server in self.servers.values()]
        return families(numbers, build)

    def describe(self) -> Iterable[Metric]:
        # Nothing to check at registration: the names are fixed, and
        # describing by collecting would record a scrape's worth of work.
        return ()

    def stop_recording(self) -> None:
        """Take the recorders away again (the servers then pay nothing per connection)."""
        for server in self.servers.values():
            server._pipeline.recorder = None


def register(
    *servers: Any,
    registry: CollectorRegistry | None = None,
    names: Sequence[str] | None = None,
    port: int | None = None,
    addr: str = "127.0.0.1",
) -> ServerCollector:
    """Expose ``servers`` through ``registry`` (the default one if not given).

    Each server is one ``listener`` label: its bound address, or the matching
    entry of ``names``. With ``port``, also serve the registry over HTTP on
    ``addr:port`` (prometheus-client's own server thread: fine in a program
    that does not fork; the runner serves its own). Returns the collector
    (``registry.unregister(collector)`` and ``stop_recording()`` undo it).
    """
    if names is not None and len(names) != len(servers):
        raise ValueError(f"{len(servers)} server(s) but {len(names)} name(s)")
    labels = list(names) if names is not None else _listener_names(servers)
    collector = ServerCollector(dict(zip(labels, servers, strict=True)))
    target = registry if registry is not None else REGISTRY
    target.register(collector)
    if port is not None:
        start_http_server(port, addr=addr, registry=target)
    return collector


def _listener_names(servers: Sequence[Any]) -> list[str]:
    labels: list[str] = []
    for server in servers:
        label = describe_address(server.server_address)
        while label in labels:
            label += "'"  # two servers on one address (unlikely): still two series
        labels.append(label)
    return labels
