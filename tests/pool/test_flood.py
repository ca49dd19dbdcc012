"""2,000 idle connections against a pool server in another process: threads and memory bounded.

The server runs in a subprocess (``helpers/pool_flood_server.py``) so that its
thread count and resident memory can be read from ``/proc/PID/status``. (How
the standard library's thread-per-connection server fares under the same
flood is a measurement, not a test: ``python -m benchmarks.micro``.)
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
from collections.abc import Callable, Iterator

import pytest

from helpers.clients import connect, recv_line
from helpers.processes import TESTS, Child, child_env, helper_argv, proc_status

pytestmark = pytest.mark.slow

FLOOD = 2000
MAX_WORKERS = 32
#: Threads a pool server may have beyond its workers: main, serving, first-byte waiter,
#: and a little slack.
EXTRA_THREADS = 5


@pytest.fixture(autouse=True, scope="module")
def enough_descriptors() -> Iterator[None]:
    """The test and the server each hold FLOOD sockets: raise the soft limit if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * FLOOD + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def flood_server(spawn: Callable[..., Child], kind: str) -> tuple[Child, tuple[str, int]]:
    """The helper process of ``kind`` and the address it serves."""
    server = spawn(helper_argv("pool_flood_server", kind), env=child_env(TESTS), stdin=True)
    [announced] = server.wait_for(r"^PORT (\d+)$", stream="stdout")
    return server, ("127.0.0.1", int(announced[1]))


def status(server: Child) -> tuple[int, int]:
    """(threads, resident memory in KiB) of the server process."""
    fields = proc_status(server.pid)
    return int(fields["Threads"][0]), int(fields["VmRSS"][0])


def open_flood(stack: contextlib.ExitStack, address: tuple[str, int]) -> list[socket.socket]:
    """FLOOD connections that never send anything (the listen backlog is SOMAXCONN)."""
    return [stack.enter_context(connect(address)) for _ in range(FLOOD)]


def test_pool_flood_keeps_threads_bounded(spawn: Callable[..., Child]) -> None:
    server, address = flood_server(spawn, "pool")
    with contextlib.ExitStack() as stack:
        _threads0, rss0 = status(server)
        open_flood(stack, address)
        # 32 workers busy with idle clients, 32 queued; the rest wait in the backlog.
        assert server.ask(f"handlers {MAX_WORKERS} 15", timeout=20) == "ok"
        assert server.ask(f"accepted {2 * MAX_WORKERS} 15", timeout=20) == "ok"
        stats = json.loads(server.ask("stats"))
        threads, rss = status(server)
        assert stats["workers"] == MAX_WORKERS
        assert stats["busy_workers"] == MAX_WORKERS
        assert stats["accepted"] == 2 * MAX_WORKERS
        assert stats["accepting"] is False
        assert threads <= MAX_WORKERS + EXTRA_THREADS
        # A thread per client would cost far more (a stack and its guard pages each).
        assert rss - rss0 < 64 * 1024


def test_readable_pool_flood_still_serves_a_talker(spawn: Callable[..., Child]) -> None:
    server, address = flood_server(spawn, "pool-readable")
    with contextlib.ExitStack() as stack:
        open_flood(stack, address)
        assert server.ask(f"accepted {FLOOD} 15", timeout=20) == "ok"
        threads, _rss = status(server)
        assert threads <= MAX_WORKERS + EXTRA_THREADS
        with connect(address, timeout=5.0) as talker:
            talker.sendall(b"hello through the flood\n")
            assert recv_line(talker) == b"hello through the flood\n"
        stats = json.loads(server.ask("stats"))
        assert stats["accepted"] == FLOOD + 1
        assert stats["busy_workers"] <= 1
