"""WorkerPool's scheduling: busy workers take queued jobs first; the pool grows when they stall.

The policy (see sockserve.strategies.workers): while fewer than
``eager_workers`` jobs run, a job starts at once; beyond that it waits for a
busy worker, at most ``grow_after`` seconds, then another worker takes it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import sockserve
from helpers.clients import connect, recv_line
from helpers.handlers import LineEcho
from helpers.net import wait_until
from sockserve.strategies.workers import WorkerPool
from sockserve.testing import serving

WAIT = 10.0

PoolFactory = Callable[..., WorkerPool[str]]


class Jobs:
    """Jobs that record where they ran and block until released."""

    def __init__(self) -> None:
        self.started: dict[str, threading.Event] = {}
        self.release: dict[str, threading.Event] = {}
        self.thread_of: dict[str, str] = {}
        self.started_at: dict[str, float] = {}

    def add(self, name: str) -> str:
        self.started[name] = threading.Event()
        self.release[name] = threading.Event()
        return name

    def run(self, name: str) -> None:
        self.thread_of[name] = threading.current_thread().name
        self.started_at[name] = time.monotonic()
        self.started[name].set()
        self.release[name].wait(WAIT)

    def release_all(self) -> None:
        for event in self.release.values():
            event.set()


@pytest.fixture
def jobs() -> Iterator[Jobs]:
    recorded = Jobs()
    yield recorded
    recorded.release_all()


@pytest.fixture
def make_pool(jobs: Jobs) -> Iterator[PoolFactory]:
    """Pools running ``jobs.run``; at teardown the jobs are released and the pools closed."""
    pools: list[WorkerPool[str]] = []

    def make(**kwargs: object) -> WorkerPool[str]:
        options: dict[str, object] = {"max_workers": 4, "max_pending": 8}
        options.update(kwargs)
        pool: WorkerPool[str] = WorkerPool(jobs.run, **options)  # type: ignore[arg-type]
        pools.append(pool)
        return pool

    yield make
    jobs.release_all()
    for pool in pools:
        pool.close(timeout=WAIT)


def test_a_queued_job_waits_for_the_busy_worker_and_runs_on_it(
    jobs: Jobs, make_pool: PoolFactory
) -> None:
    pool = make_pool(eager_workers=1, grow_after=60.0)
    pool.submit(jobs.add("first"))
    assert jobs.started["first"].wait(WAIT)
    pool.submit(jobs.add("second"))
    # Within the (long) grow_after the second job must not start elsewhere.
    assert not jobs.started["second"].wait(0.2)
    assert pool.counts()[1:] == (1, 1)
    jobs.release["first"].set()
    assert jobs.started["second"].wait(WAIT)
    assert jobs.thread_of["second"] == jobs.thread_of["first"]


def test_a_stalled_worker_makes_the_pool_grow_after_the_delay(
    jobs: Jobs, make_pool: PoolFactory
) -> None:
    pool = make_pool(eager_workers=1, grow_after=0.05)
    pool.submit(jobs.add("stuck"))
    assert jobs.started["stuck"].wait(WAIT)
    queued_at = time.monotonic()
    pool.submit(jobs.add("next"))
    assert jobs.started["next"].wait(WAIT)
    assert jobs.thread_of["next"] != jobs.thread_of["stuck"]
    assert jobs.started_at["next"] - queued_at >= 0.045


def test_the_pool_still_grows_to_max_workers_and_queues_the_rest(
    jobs: Jobs, make_pool: PoolFactory
) -> None:
    pool = make_pool(eager_workers=1, grow_after=0.01, max_workers=5)
    names = [jobs.add(f"job{i}") for i in range(8)]
    for name in names:
        assert pool.submit(name)
    # busy counts a job once a worker took it; thread_of once it runs: wait for both.
    assert wait_until(lambda: len(jobs.thread_of) == 5 and pool.counts() == (5, 5, 3))
    assert len(set(jobs.thread_of.values())) == 5
    # The queued ones run as soon as workers free up.
    jobs.release_all()
    assert all(jobs.started[name].wait(WAIT) for name in names)


def test_grow_after_zero_starts_every_job_at_once(jobs: Jobs, make_pool: PoolFactory) -> None:
    pool = make_pool(eager_workers=1, grow_after=0.0, max_workers=4)
    names = [jobs.add(f"job{i}") for i in range(4)]
    for name in names:
        pool.submit(name)
    assert all(jobs.started[name].wait(WAIT) for name in names)
    assert len(set(jobs.thread_of.values())) == 4


def test_closing_runs_the_queue_without_waiting_for_the_delay(
    jobs: Jobs, make_pool: PoolFactory
) -> None:
    pool = make_pool(eager_workers=1, grow_after=60.0)
    pool.submit(jobs.add("busy"))
    assert jobs.started["busy"].wait(WAIT)
    pool.submit(jobs.add("queued"))
    pool.close(wait=False)
    assert jobs.started["queued"].wait(WAIT)


@pytest.mark.parametrize(
    ("option", "value"),
    [("eager_workers", 0), ("eager_workers", 1.5), ("grow_after", -1), ("grow_after", "fast")],
)
def test_bad_values_are_refused_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        sockserve.ThreadPoolTCPServer(
            ("127.0.0.1", 0),
            sockserve.BaseRequestHandler,
            **{option: value},  # type: ignore[arg-type]
        )


def test_the_pool_class_defaults_are_the_documented_ones() -> None:
    assert sockserve.ThreadPoolTCPServer.eager_workers == 2
    assert sockserve.ThreadPoolTCPServer.grow_after == 0.002


def test_persistent_clients_beyond_the_eager_workers_are_all_served() -> None:
    """Each of six connections holds its worker; the pool must grow past eager_workers=2."""
    server = sockserve.ThreadPoolTCPServer(
        ("127.0.0.1", 0), LineEcho, max_workers=8, eager_workers=2, grow_after=0.01
    )
    with serving(server):
        clients = [connect(server.server_address, family=socket.AF_INET) for _ in range(6)]
        try:
            for number, client in enumerate(clients):
                client.sendall(b"hello %d\n" % number)
            for number, client in enumerate(clients):
                assert recv_line(client) == b"hello %d\n" % number
            assert server.stats().workers >= 6
        finally:
            for client in clients:
                client.close()
