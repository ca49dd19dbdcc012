"""The master's metrics: its own counters, the workers' slots, and ``/metrics`` + ``/healthz``.

``--metrics-bind HOST:PORT`` opens one more listening socket in the master,
served by the master's own ``select`` loop: no thread, because the master
forks (a thread holding a lock at a fork leaves the child a lock nobody will
release). The HTTP side (:mod:`sockserve.runner.endpoint`) never blocks, so a
scraper cannot stall supervision. Workers' numbers come from their shared-memory slots
(:mod:`sockserve.runner.slots`, which says why that aggregation).

With ``--workers 0`` there is no master and nothing forks: :class:`InProcessMetrics`
serves the same endpoint from a thread, reading the servers themselves.

``/healthz`` answers 200 while the run serves and 503 otherwise: while
booting, during ``--shutdown-delay`` (still accepting, so load balancers and
Kubernetes endpoints stop sending first) and during the drain.

prometheus-client is imported only when ``--metrics-bind`` is given; the
master's counters (restarts, reloads, boot failures) are plain integers,
kept whether or not anyone exposes them.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

from sockserve import __version__
from sockserve.core.addresses import parse_bind_spec
from sockserve.observability.logs import describe_address
from sockserve.observability.recorder import Histogram
from sockserve.runner.endpoint import Endpoint, Reply
from sockserve.runner.listeners import Listener
from sockserve.runner.slots import ListenerTotals, Slot

__all__ = ["InProcessMetrics", "MasterMetrics"]

#: The text exposition's content type (prometheus-client's format 0.0.4).
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


class MasterMetrics:
    """What the master counts, and (with ``--metrics-bind``) the endpoint and the slots."""

    def __init__(self, listeners: list[Listener], worker_class: str) -> None:
        self.listeners = listeners
        self.worker_class = worker_class
        #: Workers replaced, by cause (``sockserve_worker_restarts_total``).
        self.restarts: Counter[str] = Counter()
        #: Reloads by result, "ok" or "failed".
        self.reloads: Counter[str] = Counter()
        self.boot_failures = 0
        self._endpoint: Endpoint | None = None
        self._slots: dict[int, Slot] = {}
        self._totals: list[ListenerTotals] = []
        self._render: Callable[[MasterMetrics, int, bool], bytes] | None = None

    # -- life ------------------------------------------------------------------

    def open(self, address: str) -> str:
        """Listen on ``address`` (HOST:PORT); return the bound address (port 0 picks one)."""
        from sockserve.runner.exposition import render  # noqa: PLC0415  (prometheus-client)

        sock = _listen(address)
        self._endpoint = Endpoint(sock)
        self._render = render
        self._totals = [ListenerTotals() for _ in self.listeners]
        return describe_address(sock.getsockname())

    @property
    def enabled(self) -> bool:
        return self._endpoint is not None

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
        for slot in self._slots.values():
            slot.close()
        self._slots.clear()

    # -- workers' slots --------------------------------------------------------------

    def new_slot(self) -> Slot | None:
        """A slot for the worker about to be forked (None without --metrics-bind)."""
        return Slot(len(self.listeners)) if self.enabled else None

    def worker_started(self, pid: int, slot: Slot | None) -> None:
        if slot is not None:
            self._slots[pid] = slot

    def in_child(self, keep: Slot | None) -> None:
        """In a freshly forked worker: let go of the master's sockets and other slots."""
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
        for slot in self._slots.values():
            if slot is not keep:
                slot.close()
        self._slots.clear()

    def worker_gone(self, pid: int) -> None:
        """A reaped worker: keep its counters and histograms, drop its gauges and slot."""
        slot = self._slots.pop(pid, None)
        if slot is None:
            return
        for index, totals in enumerate(self._totals):
            totals.retire(*slot.read(index))
        slot.close()

    def listener_numbers(self) -> list[tuple[str, list[float], dict[str, Histogram]]]:
        """(listener label, summed fields, merged histograms) for each listener."""
        result: list[tuple[str, list[float], dict[str, Histogram]]] = []
        for index, (listener, totals) in enumerate(zip(self.listeners, self._totals, strict=True)):
            values, histograms = totals.total([slot.read(index) for slot in self._slots.values()])
            result.append((str(listener.spec), values, dict(histograms)))
        return result

    def build_info(self) -> list[tuple[str, str, str]]:
        """``sockserve_build_info`` labels: what the live workers said they are."""
        seen = {slot.describe() for slot in self._slots.values()}
        triples = [(__version__, *described) for described in seen if described is not None]
        return triples or [(__version__, self.worker_class, "none")]

    # -- HTTP: the master's loop drives the endpoint ---------------------------------

    def readers(self) -> list[int]:
        return self._endpoint.readers() if self._endpoint is not None else []

    def writers(self) -> list[int]:
        return self._endpoint.writers() if self._endpoint is not None else []

    def readable(self, fd: int, workers_alive: int, healthy: bool) -> None:
        if self._endpoint is None:
            return

        def render() -> bytes:
            assert self._render is not None
            return self._render(self, workers_alive, healthy)

        self._endpoint.readable(fd, partial(_answer, healthy, render))

    def writable(self, fd: int) -> None:
        if self._endpoint is not None:
            self._endpoint.writable(fd)

    def expire(self, now: float) -> None:
        if self._endpoint is not None:
            self._endpoint.expire(now)


class InProcessMetrics:
    """``--metrics-bind`` with ``--workers 0``: the endpoint in a thread of the serving process.

    No master and no worker processes here, so nothing to add up: the
    servers are read live (the library's collector), and a thread serves the
    endpoint (this process forks only for the fork worker class, whose
    children run one handler and exit). ``healthy`` says what ``/healthz``
    answers.
    """

    def __init__(self, servers: Sequence[Any], names: Sequence[str]) -> None:
        from sockserve.observability.metrics import ServerCollector  # noqa: PLC0415

        self._collector = ServerCollector(dict(zip(names, servers, strict=True)))
        self._endpoint: Endpoint | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, address: str, healthy: Callable[[], bool]) -> str:
        """Listen on ``address`` and serve from a thread; return the bound address."""
        sock = _listen(address)
        self._endpoint = Endpoint(sock)
        self._thread = threading.Thread(
            target=self._serve, args=(self._endpoint, healthy), name="sockserve-metrics"
        )
        self._thread.daemon = True
        self._thread.start()
        return describe_address(sock.getsockname())

    def _serve(self, endpoint: Endpoint, healthy: Callable[[], bool]) -> None:
        from sockserve.runner.exposition import render_collector  # noqa: PLC0415

        while not self._stop.is_set():
            readable, writable, _ = select.select(endpoint.readers(), endpoint.writers(), [], 0.2)
            for fd in writable:
                endpoint.writable(fd)
            for fd in readable:
                ok = healthy()
                render = partial(render_collector, self._collector, ok)
                endpoint.readable(fd, partial(_answer, ok, render))
            endpoint.expire(time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._endpoint is not None:
            self._endpoint.close()
        self._collector.stop_recording()


def _listen(address: str) -> socket.socket:
    spec = parse_bind_spec(address)
    host, port = cast(tuple[str, int], spec.address)[:2]
    return socket.create_server((host, port), family=spec.family, backlog=64)


def _answer(healthy: bool, render: Callable[[], bytes], path: str) -> Reply:
    """The reply for ``path``: /healthz from ``healthy``, /metrics from ``render``."""
    if path == "/healthz":
        if healthy:
            return 200, "text/plain", b"ok\n"
        return 503, "text/plain", b"unavailable\n"  # booting, delaying or draining
    if path == "/metrics":
        return 200, EXPOSITION, render()
    return 404, "text/plain", b"not found: try /metrics or /healthz\n"
