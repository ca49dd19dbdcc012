"""Per-connection histograms: how long connections last, how many bytes they move.

Counters (accepted, refused, errors...) already exist in every server and are
read at scrape time (``server.stats()``); a distribution cannot be read
later, so it has to be recorded as each connection ends. That is the only
per-connection cost of metrics, and it is paid only by a server that has a
recorder (:func:`sockserve.observability.metrics.register` installs one):

* one ``time.monotonic()`` (the connection's age since admission);
* one ``getsockopt(TCP_INFO)`` for the bytes in and out, the same kernel
  counters the access log reads (none per byte, whatever the handler does);
* three ``bisect`` and a few float additions under an uncontended lock.

The recorder keeps plain (non-cumulative) bucket counts and sums in one flat
array of doubles. In a process of its own that is a Python list; in a
runner worker it is the worker's slot of shared memory (a ``memoryview`` of
an ``mmap``), so the master reads the histograms without asking the worker.
Either way this module imports nothing beyond the standard library.

The duration is the connection's, from admission to its end: the wait for a
pool worker, the pre-handler steps (PROXY header, TLS handshake) and the
handler. It is what a client waits for; in the common case (no pre-handler
steps, a free worker) it is the handler's own time.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Protocol

from sockserve.observability.access import tcp_byte_counts

__all__ = [
    "BYTES_BUCKETS",
    "DURATION_BUCKETS",
    "HISTOGRAMS",
    "RECORDER_SIZE",
    "Histogram",
    "RequestRecorder",
    "Storage",
]

#: Upper bounds (seconds) of the duration buckets: a millisecond to five minutes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
#: Upper bounds (bytes) of the byte-count buckets: powers of four from 64 B to 256 MiB.
BYTES_BUCKETS: tuple[float, ...] = tuple(float(64 * 4**n) for n in range(12))
#: The histograms every recorder keeps, in storage order.
HISTOGRAMS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("duration", DURATION_BUCKETS),
    ("bytes_in", BYTES_BUCKETS),
    ("bytes_out", BYTES_BUCKETS),
)


class Storage(Protocol):
    """Where a recorder keeps its doubles: a list, or a ``memoryview`` of shared memory."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> float: ...
    def __setitem__(self, index: int, value: float, /) -> None: ...


def _size(bounds: Sequence[float]) -> int:
    return len(bounds) + 2  # the buckets, +Inf, the sum


#: Offsets of the sums within their histogram (after the buckets and +Inf).
_DURATION_SUM = len(DURATION_BUCKETS) + 1
_BYTES_SUM = len(BYTES_BUCKETS) + 1
#: Doubles a recorder's storage holds.
RECORDER_SIZE = sum(_size(bounds) for _, bounds in HISTOGRAMS)


class Histogram:
    """A read-only view of one histogram: bounds, per-bucket counts (+Inf last), sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float], counts: Sequence[float], total: float) -> None:
        self.bounds = tuple(bounds)
        self.counts = tuple(counts)
        self.total = total

    @property
    def count(self) -> float:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        pairs = []
        running = 0.0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            pairs.append((le, running))
        return pairs

    def merged(self, other: Histogram) -> Histogram:
        counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        return Histogram(self.bounds, counts, self.total + other.total)


class RequestRecorder:
    """Records each ending connection into the histograms (see the module doc).

    ``storage``: where the numbers live, ``RECORDER_SIZE`` doubles (a fresh
    list if not given). The lock makes the read-add-write of a bucket safe
    between a pool's worker threads; :meth:`histograms` reads without it (a
    scrape may see one connection's duration before its bytes).
    """

    def __init__(self, storage: Storage | None = None) -> None:
        if storage is None:
            storage = [0.0] * RECORDER_SIZE  # a list is a Storage
        if len(storage) != RECORDER_SIZE:
            raise ValueError(f"a recorder needs {RECORDER_SIZE} values, got {len(storage)}")
        self.storage = storage
        self._lock = threading.Lock()
        offsets = []
        at = 0
        for _, bounds in HISTOGRAMS:
            offsets.append(at)
            at += _size(bounds)
        self._duration_at, self._in_at, self._out_at = offsets

    def record(self, admitted_at: float, request: Any) -> None:
        """Record one ending connection: admitted at ``admitted_at``, its socket still open."""
        duration = time.monotonic() - admitted_at
        self.record_values(duration, tcp_byte_counts(request))

    def record_values(self, duration: float, counts: tuple[int, int] | None) -> None:
        """Record a connection of ``duration`` seconds that moved ``counts`` (in, out) bytes."""
        store = self.storage
        # Bucket positions first, outside the lock: it only guards the additions.
        at = self._duration_at
        bucket = at + bisect_left(DURATION_BUCKETS, duration)
        total = at + _DURATION_SUM
        if counts is None:
            with self._lock:
                store[bucket] += 1.0
                store[total] += duration
            return
        received, sent = counts
        in_at, out_at = self._in_at, self._out_at
        in_bucket = in_at + bisect_left(BYTES_BUCKETS, received)
        out_bucket = out_at + bisect_left(BYTES_BUCKETS, sent)
        with self._lock:
            store[bucket] += 1.0
            store[total] += duration
            store[in_bucket] += 1.0
            store[in_at + _BYTES_SUM] += received
            store[out_bucket] += 1.0
            store[out_at + _BYTES_SUM] += sent

    def histograms(self) -> dict[str, Histogram]:
        """The histograms now, by name (``duration``, ``bytes_in``, ``bytes_out``)."""
        return read_histograms([self.storage[at] for at in range(RECORDER_SIZE)])


def read_histograms(storage: Sequence[float]) -> dict[str, Histogram]:
    """Decode a recorder's storage (a live one, or a copy of a worker's slot)."""
    values = list(storage)
    result = {}
    at = 0
    for name, bounds in HISTOGRAMS:
        n = len(bounds) + 1
        result[name] = Histogram(bounds, values[at : at + n], values[at + n])
        at += n + 1
    return result
