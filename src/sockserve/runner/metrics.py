"""The master's metrics: its own counters, the workers' slots, and ``/metrics`` + ``/healthz``.

``--metrics-bind HOST:PORT`` opens one more listening socket in the master,
served by the master's own ``select`` loop: no thread, because the master
forks (a thread holding a lock at a fork leaves the child a lock nobody will
release). The HTTP side (:mod:`sockserve.runner.endpoint`) never blocks, so a
scraper cannot stall supervision. Workers' numbers come from their shared-memory slots
(:mod:`sockserve.runner.slots`, which says why that aggregation).

``/healthz`` answers 200 while the run serves and 503 otherwise: while
booting, during ``--shutdown-delay`` (still accepting, so load balancers and
Kubernetes endpoints stop sending first) and during the drain.

prometheus-client is imported only when ``--metrics-bind`` is given; the
master's counters (restarts, reloads, boot failures) are plain integers,
kept whether or not anyone exposes them.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable
from typing import cast

from sockserve import __version__
from sockserve.core.addresses import parse_bind_spec
from sockserve.observability.logs import describe_address
from sockserve.observability.recorder import Histogram
from sockserve.runner.endpoint import Endpoint, Reply
from sockserve.runner.listeners import Listener
from sockserve.runner.slots import ListenerTotals, Slot

__all__ = ["MasterMetrics"]

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

        spec = parse_bind_spec(address)
        host, port = cast(tuple[str, int], spec.address)[:2]
        sock = socket.create_server((host, port), family=spec.family, backlog=64)
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

        def answer(path: str) -> Reply:
            if path == "/healthz":
                if healthy:
                    return 200, "text/plain", b"ok\n"
                return 503, "text/plain", b"unavailable\n"  # booting, delaying or draining
            if path == "/metrics" and self._render is not None:
                return 200, EXPOSITION, self._render(self, workers_alive, healthy)
            return 404, "text/plain", b"not found: try /metrics or /healthz\n"

        self._endpoint.readable(fd, answer)

    def writable(self, fd: int) -> None:
        if self._endpoint is not None:
            self._endpoint.writable(fd)

    def expire(self, now: float) -> None:
        if self._endpoint is not None:
            self._endpoint.expire(now)
