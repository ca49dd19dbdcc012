"""2,000 idle connections against a server in another process: threads and memory stay bounded.

The server runs in a subprocess (tests/helpers/pool_flood_server.py) so that its
thread count and resident memory can be read from /proc/PID/status. The same
flood is measured against the standard library's ThreadingTCPServer for
comparison; those numbers are printed (run with -s), not asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sockserve
from helpers.clients import connect, recv_line

pytestmark = pytest.mark.slow

FLOOD = 2000
MAX_WORKERS = 32
HELPER = Path(__file__).resolve().parent.parent / "helpers" / "pool_flood_server.py"
#: Threads a pool server may have beyond its workers: main, control, first-byte waiter,
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


class FloodServer:
    """The helper process: its port, a command channel and its /proc status."""

    def __init__(self, kind: str) -> None:
        env = dict(os.environ)
        src = str(Path(sockserve.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self._read_line()
        assert line.startswith("PORT "), line
        self.address = ("127.0.0.1", int(line.split()[1]))

    def _read_line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the helper answers every command
        if not line:
            raise AssertionError(f"flood server {self.kind} exited: {self.proc.poll()}")
        return line.strip()

    def command(self, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self._read_line()

    def status(self) -> tuple[int, int]:
        """(threads, resident memory in KiB) of the server process."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.split()
        return int(fields["Threads"][0]), int(fields["VmRSS"][0])

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    assert self.proc.stdin is not None
                    self.proc.stdin.write("quit\n")
                    self.proc.stdin.flush()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()


@contextlib.contextmanager
def flood_server(kind: str) -> Iterator[FloodServer]:
    server = FloodServer(kind)
    try:
        yield server
    finally:
        server.close()


def open_flood(stack: contextlib.ExitStack, address: tuple[str, int]) -> list[socket.socket]:
    """FLOOD connections that never send anything (the listen backlog is SOMAXCONN)."""
    return [stack.enter_context(connect(address)) for _ in range(FLOOD)]


def report(kind: str, threads: int, rss_kib: int, seconds: float) -> None:
    print(
        f"\nFLOOD {kind}: {FLOOD} idle connections -> {threads} threads, "
        f"VmRSS {rss_kib / 1024:.1f} MiB (measured after {seconds:.2f} s)"
    )


def test_pool_flood_keeps_threads_bounded() -> None:
    with flood_server("pool") as server, contextlib.ExitStack() as stack:
        _threads0, rss0 = server.status()
        started = time.monotonic()
        open_flood(stack, server.address)
        # 32 workers busy with idle clients, 32 queued; the rest wait in the backlog.
        assert server.command(f"handlers {MAX_WORKERS} 15") == "ok"
        assert server.command(f"accepted {2 * MAX_WORKERS} 15") == "ok"
        stats = json.loads(server.command("stats"))
        threads, rss = server.status()
        report(
            "sockserve ThreadPoolTCPServer(max_workers=32)",
            threads,
            rss,
            time.monotonic() - started,
        )
        print(f"  stats: {stats}; RSS grew by {(rss - rss0) / 1024:.1f} MiB")
        assert stats["workers"] == MAX_WORKERS
        assert stats["busy_workers"] == MAX_WORKERS
        assert stats["accepted"] == 2 * MAX_WORKERS
        assert stats["accepting"] is False
        assert threads <= MAX_WORKERS + EXTRA_THREADS
        assert rss - rss0 < 64 * 1024  # sanity only: a thread per client would be far more


def test_readable_pool_flood_still_serves_a_talker() -> None:
    with flood_server("pool-readable") as server, contextlib.ExitStack() as stack:
        _threads0, rss0 = server.status()
        started = time.monotonic()
        open_flood(stack, server.address)
        assert server.command(f"accepted {FLOOD} 15") == "ok"
        threads, rss = server.status()
        elapsed = time.monotonic() - started
        report('sockserve ThreadPoolTCPServer(dispatch="readable")', threads, rss, elapsed)
        assert threads <= MAX_WORKERS + EXTRA_THREADS
        with connect(server.address, timeout=5.0) as talker:
            started = time.monotonic()
            talker.sendall(b"hello through the flood\n")
            assert recv_line(talker) == b"hello through the flood\n"
            print(f"  talker served in {1000 * (time.monotonic() - started):.1f} ms")
        stats = json.loads(server.command("stats"))
        assert stats["accepted"] == FLOOD + 1
        assert stats["busy_workers"] <= 1
        print(f"  stats: {stats}; RSS grew by {(rss - rss0) / 1024:.1f} MiB")


def test_stdlib_threading_server_under_the_same_flood() -> None:
    """For comparison only: a thread per connection. Printed, not asserted beyond sanity."""
    with flood_server("stdlib") as server, contextlib.ExitStack() as stack:
        _threads0, rss0 = server.status()
        started = time.monotonic()
        open_flood(stack, server.address)
        assert server.command(f"handlers {FLOOD} 30") == "ok"
        threads, rss = server.status()
        report("stdlib socketserver.ThreadingTCPServer", threads, rss, time.monotonic() - started)
        print(f"  RSS grew by {(rss - rss0) / 1024:.1f} MiB")
        assert threads >= FLOOD
