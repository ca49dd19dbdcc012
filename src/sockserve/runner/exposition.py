"""The runner's ``/metrics`` body: the master's numbers through prometheus-client's format.

Imported by :mod:`sockserve.runner.metrics` only when ``--metrics-bind`` is
given (it imports prometheus-client). The metric families are the library's
(:func:`sockserve.observability.metrics.families`): a run with workers and a
server registered in a program expose the same names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sockserve.observability.metrics import (
    ListenerNumbers,
    MasterNumbers,
    ServerCollector,
    families,
)

if TYPE_CHECKING:
    from sockserve.runner.metrics import MasterMetrics

__all__ = ["render", "render_collector"]


class _Snapshot(Collector):
    """The families of one scrape (a registry wants a collector)."""

    def __init__(self, metrics: MasterMetrics, workers_alive: int, healthy: bool) -> None:
        self._metrics = metrics
        self._workers_alive = workers_alive
        self._healthy = healthy

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        listeners = {
            label: ListenerNumbers(values, histograms)
            for label, values, histograms in metrics.listener_numbers()
        }
        master = MasterNumbers(
            workers_alive=self._workers_alive,
            restarts=metrics.restarts,
            reloads=metrics.reloads,
            boot_failures=metrics.boot_failures,
            healthy=self._healthy,
        )
        return families(listeners, metrics.build_info(), master)

    def describe(self) -> Iterable[Metric]:
        return ()


def render(metrics: MasterMetrics, workers_alive: int, healthy: bool) -> bytes:
    """The text exposition of everything the master knows now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics, workers_alive, healthy))
    return generate_latest(registry)


class _Health(Collector):
    def __init__(self, healthy: bool) -> None:
        self._healthy = healthy

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sockserve_healthy",
            "1 while /healthz answers 200; 0 in the shutdown delay and the drain.",
            value=1.0 if self._healthy else 0.0,
        )

    def describe(self) -> Iterable[Metric]:
        return ()


def render_collector(collector: ServerCollector, healthy: bool) -> bytes:
    """The text exposition of live servers (``--workers 0``), with ``sockserve_healthy``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(_Health(healthy))
    return generate_latest(registry)
