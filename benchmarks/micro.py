"""Micro-measurements of sockserve's per-connection bookkeeping: ``python -m benchmarks.micro``.

Not part of the side-by-side suite: these time one piece of sockserve alone
(the tracker's admit and release, ``stats()``, the limits on the accept path)
and print the figures, for when a change touches those paths. They moved here
from the test suite, where a measurement cannot fail and only costs time.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
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


def _time_connections(count: int, **options: object) -> float:
    server = sockserve.TCPServer(("127.0.0.1", 0), _Quick, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.perf_counter()
        for _ in range(count):
            with socket.create_connection(server.server_address, timeout=10) as client:
                client.sendall(b"x")
                client.recv(1)
        return time.perf_counter() - started
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


def main() -> None:
    tracker_alone()
    stats_cost()
    limits_cost()


if __name__ == "__main__":
    main()
