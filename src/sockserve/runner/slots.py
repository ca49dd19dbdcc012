"""One slot of shared memory per worker: how the master sees every worker's numbers.

Why this, of the ways to add up metrics over pre-forked workers:

* prometheus-client's multiprocess mode writes every increment to an mmap
  file, cannot read a value at scrape time (our counters already exist in
  each server: they would be counted twice), needs a mode per gauge, has no
  Info, and leaves a file per dead worker behind (many, under ``--max-requests``);
* the master asking each worker over a pipe at scrape time costs nothing on
  the hot path, but a worker stuck behind a handler stalls the scrape, and
  whatever a worker counted since the last ask is lost when it crashes;
* a slot per worker (chosen): the master maps a small anonymous shared
  region (``mmap(-1, n)``, ``MAP_SHARED``) before it forks the worker, so
  both see the same pages. The worker is the slot's only writer and takes no
  lock: its histograms live in the slot (each connection's end adds to them
  in place), and its counters, which its servers keep anyway, are copied in
  from ``stats()`` once per loop turn (a second at most). The master reads
  the slot whenever it is scraped, never waiting for the worker; when it
  reaps a worker it folds the slot's counters and histograms into a retired
  total, drops its gauges and unmaps it, so counters keep counting across
  restarts, recycling and reloads, and no dead worker's gauge lingers.

A read may see a value half a second old, or one connection's duration
before its bytes; never a torn double (aligned 8-byte stores). A worker that
crashes loses what it counted since its last copy (under a second).

Layout (doubles): the worker class and event loop codes, then per listener
the sample fields (:data:`~sockserve.observability.samples.FIELDS`) followed
by the recorder's histograms.
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Sequence
from typing import Any, cast

from sockserve.observability.recorder import (
    RECORDER_SIZE,
    Histogram,
    RequestRecorder,
    read_histograms,
)
from sockserve.observability.samples import (
    EVENT_LOOPS,
    FIELDS,
    GAUGE_FIELDS,
    INDEX,
    WORKER_CLASSES,
    describe_server,
    sample,
)

__all__ = ["ListenerTotals", "Slot"]

_HEADER = 2
_PER_LISTENER = len(FIELDS) + RECORDER_SIZE
_GAUGES = frozenset(INDEX[name] for name in GAUGE_FIELDS)


class Slot:
    """A worker's region of shared memory (made by the master before the fork)."""

    def __init__(self, listeners: int) -> None:
        self.listeners = listeners
        size = 8 * (_HEADER + listeners * _PER_LISTENER)
        self._map = mmap.mmap(-1, max(size, mmap.PAGESIZE))
        self._doubles = memoryview(self._map).cast("d")

    def _base(self, listener: int) -> int:
        return _HEADER + listener * _PER_LISTENER

    # -- the worker's side -------------------------------------------------------

    def attach(self, servers: Sequence[Any]) -> None:
        """In the worker: record the servers' histograms into the slot, note what they are."""
        for index, server in enumerate(servers[: self.listeners]):
            start = self._base(index) + len(FIELDS)
            storage = self._doubles[start : start + RECORDER_SIZE]
            server._pipeline.recorder = RequestRecorder(storage)
        if servers:
            worker_class, loop = describe_server(servers[0])
            # Stored plus one: a zeroed slot (nothing attached yet) reads as unknown.
            self._doubles[0] = float(WORKER_CLASSES.index(worker_class) + 1)
            self._doubles[1] = float(EVENT_LOOPS.index(loop) + 1)

    def publish(self, servers: Sequence[Any]) -> None:
        """In the worker: copy the servers' counters and gauges into the slot."""
        for index, server in enumerate(servers[: self.listeners]):
            start = self._base(index)
            self._doubles[start : start + len(FIELDS)] = array("d", sample(server.stats()))

    # -- the master's side -------------------------------------------------------

    def describe(self) -> tuple[str, str] | None:
        """(worker class, event loop) once the worker has attached, else None."""
        code = int(self._doubles[0]) - 1
        loop = int(self._doubles[1]) - 1
        if not 0 <= code < len(WORKER_CLASSES) or not 0 <= loop < len(EVENT_LOOPS):
            return None
        return WORKER_CLASSES[code], EVENT_LOOPS[loop]

    def read(self, listener: int) -> tuple[list[float], dict[str, Histogram]]:
        """A copy of one listener's fields and histograms."""
        start = self._base(listener)
        doubles = cast(list[float], self._doubles[start : start + _PER_LISTENER].tolist())
        values = doubles[: len(FIELDS)]
        histograms = read_histograms(doubles[len(FIELDS) :])
        return values, histograms

    def close(self) -> None:
        self._doubles.release()
        self._map.close()


class ListenerTotals:
    """One listener's numbers added up over live slots, plus what retired workers left."""

    def __init__(self) -> None:
        self.retired = [0.0] * len(FIELDS)
        self.retired_histograms: dict[str, Histogram] | None = None

    def retire(self, values: Sequence[float], histograms: dict[str, Histogram]) -> None:
        """Keep a dead worker's counters and histograms (not its gauges: it has none now)."""
        for at, value in enumerate(values):
            if at not in _GAUGES:
                self.retired[at] += value
        self.retired_histograms = _merge(self.retired_histograms, histograms)

    def total(
        self, live: Sequence[tuple[list[float], dict[str, Histogram]]]
    ) -> tuple[list[float], dict[str, Histogram]]:
        values = list(self.retired)
        histograms = self.retired_histograms
        for worker_values, worker_histograms in live:
            for at, value in enumerate(worker_values):
                values[at] += value
            histograms = _merge(histograms, worker_histograms)
        return values, histograms or {}


def _merge(into: dict[str, Histogram] | None, other: dict[str, Histogram]) -> dict[str, Histogram]:
    if into is None:
        return dict(other)
    return {name: into[name].merged(other[name]) for name in into}
