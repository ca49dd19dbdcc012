"""A fixed-size set of worker threads fed from a bounded queue.

This is the engine of :class:`~sockserve.concurrency.threadpool.ThreadPoolMixIn`.
Its one job beyond running jobs is to say, cheaply and at any time, whether it
has room (``has_room()``): the serving loop asks before it watches the
listener, which is how back-pressure reaches the kernel backlog instead of a
queue in user space. When a job ends and room returns, ``on_room`` is called
so the loop can start accepting again at once.

Workers start on demand, up to ``max_workers``, and never die of a job's
exception: a pool that served a million connections has the same threads as
one that served a thousand.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WorkerPool"]

_log = logging.getLogger("sockserve.pool")

_Job = TypeVar("_Job")


class WorkerPool(Generic[_Job]):
    """Runs ``run(job)`` on up to ``max_workers`` threads; at most ``max_pending`` jobs wait."""

    def __init__(
        self,
        run: Callable[[_Job], None],
        *,
        max_workers: int,
        max_pending: int,
        name: str = "sockserve",
        on_room: Callable[[], None] = lambda: None,
    ) -> None:
        if max_workers < 1 or max_pending < 0:
            raise ValueError(
                f"need max_workers >= 1 and max_pending >= 0, got {max_workers}, {max_pending}"
            )
        self._run = run
        self.max_workers = max_workers
        self.max_pending = max_pending
        self._capacity = max_workers + max_pending
        self._name = name
        self._on_room = on_room
        self._lock = threading.Lock()
        self._work_available = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._busy = 0
        self._closing = False

    def has_room(self) -> bool:
        """Whether ``submit`` would take one more job now.

        Under the lock: a worker moves a job from the queue to busy in two
        steps, and reading between them would promise room that is not there.
        """
        with self._lock:
            return self._busy + len(self._queue) < self._capacity

    def submit(self, job: _Job, *, force: bool = False) -> bool:
        """Queue ``job``; False if the pool is full (or closing) and ``force`` is not set.

        ``force`` skips the capacity check, for callers bounded elsewhere (the
        readable dispatcher, bounded by ``max_connections``).
        """
        with self._lock:
            if self._closing or (not force and self._busy + len(self._queue) >= self._capacity):
                return False
            self._queue.append(job)
            if len(self._queue) > self._idle and len(self._threads) < self.max_workers:
                self._start_worker()
            else:
                self._work_available.notify()
        return True

    def _start_worker(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-worker-{len(self._threads) + 1}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    if self._closing:
                        return
                    self._idle += 1
                    self._work_available.wait()
                    self._idle -= 1
                job = self._queue.popleft()
                self._busy += 1
            try:
                self._run(job)
            except BaseException:
                # run() handles the job's own errors; anything reaching here is a
                # bug or a SystemExit from a handler. The worker must outlive it,
                # or the pool would shrink a thread at a time.
                _log.exception("%s: a worker survived an exception", self._name)
            with self._lock:
                was_full = self._busy + len(self._queue) >= self._capacity
                self._busy -= 1
            if was_full:
                self._on_room()

    def discard_pending(self) -> list[_Job]:
        """Take every job that has not started out of the queue and return them."""
        with self._lock:
            jobs = list(self._queue)
            self._queue.clear()
        if jobs:
            self._on_room()
        return jobs

    def close(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Let workers finish the queue, then exit; with ``wait``, join them."""
        with self._lock:
            self._closing = True
            self._work_available.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join(timeout)

    def counts(self) -> tuple[int, int, int]:
        """(worker threads, busy workers, queued jobs)."""
        with self._lock:
            alive = sum(1 for thread in self._threads if thread.is_alive())
            return alive, self._busy, len(self._queue)
