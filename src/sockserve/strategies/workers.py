"""A bounded set of worker threads fed from a bounded queue, kept as hot as possible.

This is the engine of :class:`~sockserve.pool.ThreadPoolMixIn`.
Its one job beyond running jobs is to say, cheaply and at any time, whether it
has room (``has_room()``): the serving loop asks before it watches the
listener, which is how back-pressure reaches the kernel backlog instead of a
queue in user space. When a job ends and room returns, ``on_room`` is called
so the loop can start accepting again at once.

Why jobs do not always go to an idle worker at once: in CPython every thread
that wakes up has to win the GIL, and each blocking call a handler makes hands
it over again. Measured with short connections (connect, one round trip,
close; ten clients at a time), waking a sleeping worker per connection cost
17 context switches and ~150 µs of CPU per connection; letting two busy
workers take the queued connections one after the other when they finish
cost 5-6 switches and ~90 µs, with more connections per second. So:

* while fewer than ``eager_workers`` jobs run, a new job starts at once;
* beyond that it waits in the queue for a busy worker to finish, but never
  longer than ``grow_after`` seconds: then another worker (up to
  ``max_workers``) is put on it. Workers blocked on long-lived connections
  thus cost each newcomer at most ``grow_after`` once, and the pool still
  grows to ``max_workers`` when the work needs it.

One idle worker at a time watches the clock for the queue (the "timer"), so
waiting jobs do not wake every idle thread. Workers start on demand and never
die of a job's exception: a pool that served a million connections has the
same threads as one that served a thousand.
"""

from __future__ import annotations

import logging
import threading
import time
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
        eager_workers: int | None = None,
        grow_after: float = 0.0,
        name: str = "sockserve",
        on_room: Callable[[], None] = lambda: None,
        on_pressure: Callable[[], None] | None = None,
    ) -> None:
        if max_workers < 1 or max_pending < 0:
            raise ValueError(
                f"need max_workers >= 1 and max_pending >= 0, got {max_workers}, {max_pending}"
            )
        if eager_workers is not None and eager_workers < 1:
            raise ValueError(f"need eager_workers >= 1 or None, got {eager_workers}")
        if grow_after < 0:
            raise ValueError(f"need grow_after >= 0, got {grow_after}")
        self._run = run
        self.max_workers = max_workers
        self.max_pending = max_pending
        # None, or a delay of 0, means the plain policy: every job starts at once.
        eager = max_workers if eager_workers is None or grow_after == 0 else eager_workers
        self.eager_workers = min(eager, max_workers)
        self.grow_after = grow_after
        self._capacity = max_workers + max_pending
        self._name = name
        self._on_room = on_room
        #: Called (outside the lock) when a job has to wait with every worker busy.
        self._on_pressure = on_pressure
        #: Jobs queued behind the others (``submit(..., later=True)``).
        self._later: deque[tuple[_Job, float]] = deque()
        #: The jobs workers are running now.
        self._running: set[_Job] = set()
        self._lock = threading.Lock()
        #: Idle workers wait here, without a deadline.
        self._work_available = threading.Condition(self._lock)
        #: The one idle worker watching the queue's deadline waits here.
        self._deadline = threading.Condition(self._lock)
        self._timer_running = False
        self._queue: deque[tuple[_Job, float]] = deque()
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
            return self._busy + self._queued() < self._capacity

    def _queued(self) -> int:
        return len(self._queue) + len(self._later)

    def submit(self, job: _Job, *, force: bool = False, later: bool = False) -> bool:
        """Queue ``job``; False if the pool is full (or closing) and ``force`` is not set.

        ``force`` skips the capacity check, for callers bounded elsewhere (the
        readable dispatcher, bounded by ``max_connections``). ``later`` queues
        it behind every job queued without it (a connection that has sent only
        a fragment so far waits behind complete requests).
        """
        with self._lock:
            if self._closing or (not force and self._busy + self._queued() >= self._capacity):
                return False
            (self._later if later else self._queue).append((job, time.monotonic()))
            new_worker = self._see_to_queue()
            # Jobs wait with no worker idle: the guard (if any) watches until the
            # queue empties. It acts only on what the pool cannot start soon
            # (``starved``), so a pool still growing loses nobody to it.
            pressed = self._on_pressure is not None and new_worker is None and not self._idle
        if new_worker is not None:
            new_worker.start()  # outside the lock: start() waits for the thread to run
        if pressed and self._on_pressure is not None:
            self._on_pressure()
        return True

    def has_idle_worker(self) -> bool:
        """Whether one more job would find a worker free (a snapshot, without the lock).

        The ``dispatch="auto"`` hand-over asks this many times a second while
        connections are held; an answer off by one for an instant only hands
        one connection over a tick early or late.
        """
        return self._busy + len(self._queue) + len(self._later) < self.max_workers

    def waiting(self) -> int:
        """Jobs queued for a worker (a snapshot)."""
        return len(self._queue) + len(self._later)

    def starved(self) -> int:
        """Queued jobs no worker will take soon: beyond the idle workers and those
        the pool may still start (a snapshot, without the lock)."""
        spare = self._idle + self.max_workers - len(self._threads)
        return max(0, len(self._queue) + len(self._later) - spare)

    def running(self) -> list[_Job]:
        """The jobs being run now (a snapshot)."""
        with self._lock:
            return list(self._running)

    def _may_start_now(self) -> bool:
        return self._busy < self.eager_workers or self._closing

    def _see_to_queue(self) -> threading.Thread | None:
        """Make sure a worker will take the queue's head: now, or at its deadline.

        Called with the lock held and a non-empty queue. Returns a new worker
        thread to start (after releasing the lock), or None.
        """
        start_now = self._may_start_now()
        if not start_now and self._timer_running:
            return None  # the timer will grow the pool when the head is due
        # Someone must act now: run the job, or become the timer.
        if self._idle and (
            not start_now or self._idle >= self._queued() or len(self._threads) >= self.max_workers
        ):
            self._work_available.notify()
            return None
        return self._new_worker()

    def _new_worker(self) -> threading.Thread | None:
        if len(self._threads) >= self.max_workers:
            return None
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-worker-{len(self._threads) + 1}", daemon=True
        )
        self._threads.append(thread)
        return thread

    def _next_job(self, hot: bool) -> tuple[_Job, bool] | None:
        """Wait for a job this worker may run (lock held); None when the pool closes.

        ``hot``: the worker has just finished a job, so taking the next one
        costs no wake-up and it always may. Also returns whether jobs are
        still waiting, so the caller sees to them.
        """
        while True:
            if self._queue or self._later:
                if hot or self._may_start_now():
                    break
                waited = time.monotonic() - (self._queue or self._later)[0][1]
                if waited >= self.grow_after:
                    break  # the busy workers are taking too long: grow by this one
                if not self._timer_running:
                    self._timer_running = True
                    try:
                        self._deadline.wait(self.grow_after - waited)
                    finally:
                        self._timer_running = False
                    continue
            elif self._closing:
                return None
            hot = False
            self._idle += 1
            try:
                self._work_available.wait()
            finally:
                self._idle -= 1
        queue = self._queue or self._later
        # Adaptive LIFO: while more jobs wait than there are workers, the
        # newest goes first. Under overload the oldest are the likeliest to be
        # a crowd that arrived together (an attack) or clients that gave up;
        # a fresh client is served in one round instead of waiting its turn
        # behind all of them. (The same idea as Facebook's adaptive LIFO.)
        if len(queue) > self.max_workers:
            job, _queued_at = queue.pop()
        else:
            job, _queued_at = queue.popleft()
        self._busy += 1
        self._running.add(job)
        return job, bool(self._queue or self._later)

    def _work(self) -> None:
        hot = False
        while True:
            new_worker = None
            with self._lock:
                taken = self._next_job(hot)
                if taken is None:
                    return
                job, more_waiting = taken
                if more_waiting:
                    new_worker = self._see_to_queue()
            if new_worker is not None:
                new_worker.start()
            try:
                self._run(job)
            except BaseException:
                # run() handles the job's own errors; anything reaching here is a
                # bug or a SystemExit from a handler. The worker must outlive it,
                # or the pool would shrink a thread at a time.
                _log.exception("%s: a worker survived an exception", self._name)
            with self._lock:
                was_full = self._busy + self._queued() >= self._capacity
                self._busy -= 1
                self._running.discard(job)
            if was_full:
                self._on_room()
            hot = True

    def discard_pending(self) -> list[_Job]:
        """Take every job that has not started out of the queue and return them."""
        with self._lock:
            jobs = [job for job, _queued_at in (*self._queue, *self._later)]
            self._queue.clear()
            self._later.clear()
        if jobs:
            self._on_room()
        return jobs

    def close(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Let workers finish the queue (without further delay), then exit; with ``wait``, join."""
        with self._lock:
            self._closing = True
            self._work_available.notify_all()
            self._deadline.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread.ident is not None:  # created but not started yet: nothing to join
                    thread.join(timeout)

    def counts(self) -> tuple[int, int, int]:
        """(worker threads, busy workers, queued jobs)."""
        with self._lock:
            alive = sum(1 for thread in self._threads if thread.is_alive())
            return alive, self._busy, self._queued()
