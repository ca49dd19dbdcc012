"""Micro-measurements of sockserve's per-connection bookkeeping: ``python -m benchmarks.micro``.

Not part of the side-by-side suite: these time one piece of sockserve alone
(the tracker's admit and release, ``stats()``, the limits on the accept path,
what idle connections cost the pool next to the stdlib's thread per
connection) and print the figures, for when a change touches those paths.
They moved here from the test suite, where a measurement cannot fail and only
costs time.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import socketserver
import sys
import threading
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import sockserve
from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker


def tracker_alone(pairs: int = 100_000) -> None:
    """admit + release of one connection, without and with both limits."""
    for label, limits in (
        ("no limits", {}),
        ("both limits", {"max_connections": 10, "max_connections_per_ip": 10}),
    ):
        tracker = ConnectionTracker(**limits)
        request = object()
        address = ("127.0.0.1", 40000)
        started = time.perf_counter()
        for _ in range(pairs):
            conn = Connection(request, address)
            tracker.admit(conn)
            tracker.release(conn)
        per_pair = (time.perf_counter() - started) / pairs
        print(f"tracker admit+release, {label}: {per_pair * 1e6:.2f} us per connection")


def stats_cost(calls: int = 100_000) -> None:
    """One ``stats()`` snapshot, and one turned into a dict."""
    server = sockserve.ThreadPoolTCPServer(
        ("127.0.0.1", 0), sockserve.BaseRequestHandler, max_workers=4
    )
    try:
        started = time.perf_counter()
        for _ in range(calls):
            server.stats()
        per_call = (time.perf_counter() - started) / calls
        started = time.perf_counter()
        for _ in range(calls // 10):
            server.stats().as_dict()
        per_dict = (time.perf_counter() - started) / (calls // 10)
    finally:
        server.server_close()
    print(f"stats(): {per_call * 1e6:.2f} us; stats().as_dict(): {per_dict * 1e6:.2f} us")


class _Quick(sockserve.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(16)
        self.request.sendall(b"x")


def _time_connections(
    count: int, *, metrics: bool = False, cpu: bool = False, **options: object
) -> float:
    """Seconds ``count`` sequential connections take (``cpu``: the server's CPU seconds:
    the process's, less the client's, which runs on this thread)."""

    def server_cpu() -> float:
        return time.process_time() - time.thread_time()

    clock = server_cpu if cpu else time.perf_counter
    server = sockserve.TCPServer(("127.0.0.1", 0), _Quick, **options)  # type: ignore[arg-type]
    if metrics:  # the extra is optional: imported only when measured
        from prometheus_client import CollectorRegistry  # noqa: PLC0415

        from sockserve.observability.metrics import register  # noqa: PLC0415

        register(server, registry=CollectorRegistry())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = clock()
        for _ in range(count):
            with socket.create_connection(server.server_address, timeout=10) as client:
                client.sendall(b"x")
                client.recv(1)
        return clock() - started
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def limits_cost(count: int = 2000) -> None:
    """Sequential connections through TCPServer, with no limits and with every limit."""
    limits = {
        "max_connections": 1000,
        "max_connections_per_ip": 1000,
        "idle_timeout": 30.0,
        "max_line": 4096,
    }
    rounds: dict[str, list[float]] = {"no limits": [], "all limits": []}
    for _ in range(3):  # interleaved, best of three, to damp noise
        rounds["no limits"].append(_time_connections(count))
        rounds["all limits"].append(_time_connections(count, **limits))
    best = {name: min(times) / count for name, times in rounds.items()}
    print(
        f"{count} sequential connections: {best['no limits'] * 1e6:.1f} us each with no "
        f"limits, {best['all limits'] * 1e6:.1f} us with every limit "
        f"({(best['all limits'] - best['no limits']) * 1e6:+.1f} us)"
    )


def metrics_cost(count: int = 2000, records: int = 20_000) -> None:
    """What the metrics extra costs a connection: the recorder alone, then end to end.

    The recorder (a clock read, ``getsockopt(TCP_INFO)`` and three histogram
    updates) is the only per-connection work; counters are read at scrape time.
    End to end counts the server threads' CPU time (the process's less the
    client thread's), which other processes on a busy machine disturb less
    than wall time; the median of interleaved rounds.
    """
    try:  # the extra is optional: imported only when measured
        from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

        from sockserve.observability.metrics import register  # noqa: PLC0415
        from sockserve.observability.recorder import RequestRecorder  # noqa: PLC0415
    except ImportError as exc:
        print(f"metrics: not measured ({exc}; pip install 'sockserve[metrics]')")
        return
    recorder = RequestRecorder()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        client.sendall(b"x" * 100)
        accepted.recv(100)
        timings = timeit.repeat(
            lambda: recorder.record(time.monotonic(), accepted), number=records, repeat=5
        )
        per_record = min(timings) / records
    finally:
        for sock in (accepted, client, listener):
            sock.close()
    rounds: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(7):  # interleaved; the median, to damp noise
        rounds["without"].append(_time_connections(count, cpu=True))
        rounds["with"].append(_time_connections(count, cpu=True, metrics=True))
    best = {name: sorted(times)[len(times) // 2] / count for name, times in rounds.items()}
    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), _Quick, max_workers=4)
    try:
        registry = CollectorRegistry()
        register(server, registry=registry)
        per_scrape = min(timeit.repeat(lambda: generate_latest(registry), number=50, repeat=5)) / 50
    finally:
        server.server_close()
    print(
        f"metrics: recorder {per_record * 1e6:.2f} us per connection; {count} sequential "
        f"connections {best['without'] * 1e6:.1f} us of server CPU each without, "
        f"{best['with'] * 1e6:.1f} us with ({best['with'] / best['without']:.3f}x); "
        f"one scrape of one server {per_scrape * 1e3:.2f} ms"
    )


class _CountedEcho(socketserver.StreamRequestHandler):
    """Echoes lines; counts the handlers that started (class-wide, under a condition)."""

    started = 0
    changed = threading.Condition()

    def handle(self) -> None:
        with _CountedEcho.changed:
            _CountedEcho.started += 1
            _CountedEcho.changed.notify_all()
        for line in self.rfile:
            self.wfile.write(line)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _flood(
    label: str, make: Callable[[], socketserver.TCPServer], handlers: int, conns: int
) -> None:
    _CountedEcho.started = 0
    server = make()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    threads_before, rss_before = threading.active_count(), _rss_kib()
    try:
        with contextlib.ExitStack() as clients:
            for _ in range(conns):
                clients.enter_context(socket.create_connection(server.server_address, timeout=10))
            with _CountedEcho.changed:
                _CountedEcho.changed.wait_for(lambda: _CountedEcho.started >= handlers, 30)
            running = _CountedEcho.started
            threads = threading.active_count() - threads_before
            rss = _rss_kib() - rss_before
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    print(
        f"{label}: {conns} idle connections -> {running} handlers running, "
        f"+{threads} threads, VmRSS +{rss / 1024:.1f} MiB"
    )


def idle_flood(conns: int = 2000) -> None:
    """Threads and memory spent on ``conns`` connections that never send a byte.

    The stdlib's ThreadingTCPServer starts a thread per connection; the pool
    keeps ``max_workers`` busy and leaves the rest in the kernel backlog.
    (tests/pool/test_flood.py asserts the pool's bound in a process of its own.)
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * conns + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))

    class StdlibThreading(socketserver.ThreadingTCPServer):
        request_queue_size = socket.SOMAXCONN  # the flood, not the stdlib's backlog of 5
        daemon_threads = True

    def pool() -> socketserver.TCPServer:
        return sockserve.ThreadPoolTCPServer(  # type: ignore[return-value]
            ("127.0.0.1", 0), _CountedEcho, max_workers=32
        )

    _flood(
        "stdlib socketserver.ThreadingTCPServer",
        lambda: StdlibThreading(("127.0.0.1", 0), _CountedEcho),
        conns,
        conns,
    )
    _flood("sockserve ThreadPoolTCPServer(max_workers=32)", pool, 32, conns)


def main() -> None:
    tracker_alone()
    stats_cost()
    limits_cost()
    metrics_cost()
    idle_flood()


if __name__ == "__main__":
    main()
