"""server.stats(): every field moves as the server works; as_dict() for exporters.

The last two tests are measurements, printed (run with -s), not asserted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time

import pytest

import sockserve as socketserver
from helpers.clients import closed_by_peer, connect, recv_line
from sockserve.testing import serving

WAIT = 10.0


def test_pool_stats_follow_the_work() -> None:
    release = threading.Event()

    class Held(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            if line == b"hold\n":
                release.wait(WAIT * 3)
            self.wfile.write(line)

    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), Held, max_workers=2, max_pending=2)
    stats = server.stats()
    assert (stats.state, stats.accepting, stats.accepted, stats.workers) == ("idle", False, 0, 0)
    assert stats.utilisation == 0.0
    with serving(server, close=False), contextlib.ExitStack() as stack:
        assert server.wait_for(lambda st: st.state == "serving" and st.accepting, WAIT)
        first = stack.enter_context(connect(server.server_address))
        first.sendall(b"hold\n")
        assert server.wait_for(lambda st: st.busy_workers == 1, WAIT)
        stats = server.stats()
        assert (stats.accepted, stats.active, stats.completed) == (1, 1, 0)
        assert (stats.workers, stats.busy_workers, stats.pending) == (1, 1, 0)
        assert stats.utilisation == 1.0
        second = stack.enter_context(connect(server.server_address))
        second.sendall(b"quick\n")
        assert recv_line(second) == b"quick\n"
        second.close()
        assert server.wait_for(lambda st: st.completed == 1, WAIT)
        stats = server.stats()
        assert (stats.accepted, stats.active, stats.completed) == (2, 1, 1)
        assert (stats.workers, stats.busy_workers) == (2, 1)
        assert stats.utilisation == 0.5
        data = stats.as_dict()
        assert data["utilisation"] == 0.5
        assert {f.name for f in dataclasses.fields(stats)} | {"utilisation"} == set(data)
        assert json.loads(json.dumps(data)) == data  # plain types: ready for any exporter
        release.set()
        assert recv_line(first) == b"hold\n"
        assert server.wait_for(lambda st: st.active == 0 and st.busy_workers == 0, WAIT)
    stats = server.stats()
    assert (stats.state, stats.accepting) == ("idle", False)
    assert (stats.accepted, stats.completed) == (2, 2)
    server.server_close()
    assert server.stats().state == "closed"


def test_error_counters_are_kept_apart() -> None:
    class Raising(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            kind = self.rfile.readline().strip()
            errors: dict[bytes, BaseException] = {
                b"timeout": TimeoutError("slow"),
                b"reset": ConnectionResetError("gone"),
                b"peer": socketserver.LineTooLong(10),
                b"bug": ValueError("oops"),
            }
            if kind in errors:
                raise errors[kind]
            self.wfile.write(b"fine\n")

    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), Raising, max_workers=2)
    with serving(server):
        for kind, times in ((b"timeout", 1), (b"reset", 2), (b"peer", 3), (b"bug", 4)):
            for _ in range(times):
                with connect(server.server_address) as client:
                    client.sendall(kind + b"\n")
                    assert closed_by_peer(client) == "eof"
        with connect(server.server_address) as client:
            client.sendall(b"ok\n")
            assert recv_line(client) == b"fine\n"
        assert server.wait_for(lambda st: st.completed == 11, WAIT)
        stats = server.stats()
        assert stats.timed_out == 1
        assert stats.disconnects == 2
        assert stats.peer_errors == 3
        assert stats.handler_errors == 4
        assert stats.rejected == {}
        assert stats.accept_errors == {"transient": 0, "resource": 0, "unexpected": 0}


def test_threading_server_reports_requests_as_workers() -> None:
    release = threading.Event()

    class Held(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"in\n")
            release.wait(WAIT * 3)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Held)
    try:
        with serving(server), contextlib.ExitStack() as stack:
            for _ in range(3):
                assert recv_line(stack.enter_context(connect(server.server_address))) == b"in\n"
            stats = server.stats()
            assert (stats.active, stats.workers, stats.busy_workers, stats.pending) == (3, 3, 3, 0)
            release.set()
            assert server.wait_for(lambda st: st.active == 0 and st.workers == 0, WAIT)
    finally:
        release.set()


def test_a_snapshot_is_frozen_and_detached() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    try:
        stats = server.stats()
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.accepted = 5  # type: ignore[misc]
        stats.rejected["max_connections"] = 99
        stats.accept_errors["resource"] = 99
        fresh = server.stats()
        assert fresh.rejected == {}
        assert fresh.accept_errors["resource"] == 0
    finally:
        server.server_close()


# -- measurements (printed, not asserted) ------------------------------------------


@pytest.mark.slow
def test_measure_the_cost_of_stats() -> None:
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), socketserver.BaseRequestHandler, max_workers=4
    )
    try:
        calls = 100_000
        stats = server.stats
        started = time.perf_counter()
        for _ in range(calls):
            stats()
        per_call = (time.perf_counter() - started) / calls
        as_dict_started = time.perf_counter()
        for _ in range(10_000):
            stats().as_dict()
        per_as_dict = (time.perf_counter() - as_dict_started) / 10_000
    finally:
        server.server_close()
    print(
        f"\nSTATS stats(): {per_call * 1e6:.2f} us per call over {calls} calls; "
        f"stats().as_dict(): {per_as_dict * 1e6:.2f} us"
    )
    assert per_call < 0.01  # sanity only


class Quick(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(16)
        self.request.sendall(b"x")


def _time_connections(count: int, **options: object) -> float:
    server = socketserver.TCPServer(("127.0.0.1", 0), Quick, **options)  # type: ignore[arg-type]
    with serving(server):
        address = server.server_address
        started = time.perf_counter()
        for _ in range(count):
            with socket.create_connection(address, timeout=WAIT) as client:
                client.sendall(b"x")
                client.recv(1)
        elapsed = time.perf_counter() - started
        assert server.wait_for(lambda st: st.completed == count, WAIT)
    return elapsed


@pytest.mark.slow
def test_measure_the_per_connection_cost_of_the_limits() -> None:
    count = 2000
    _time_connections(200)  # warm up
    rounds: dict[str, list[float]] = {"no limits": [], "all limits": []}
    limits = {
        "max_connections": 1000,
        "max_connections_per_ip": 1000,
        "idle_timeout": 30.0,
        "max_line": 4096,
    }
    for _ in range(3):  # interleaved, best of three, to damp noise
        rounds["no limits"].append(_time_connections(count))
        rounds["all limits"].append(_time_connections(count, **limits))
    best = {name: min(times) / count for name, times in rounds.items()}
    print(
        f"\nTRACKER {count} sequential connections through TCPServer: "
        f"{best['no limits'] * 1e6:.1f} us/connection with no limits, "
        f"{best['all limits'] * 1e6:.1f} us/connection with every limit set "
        f"(difference {(best['all limits'] - best['no limits']) * 1e6:+.1f} us)"
    )
    assert best["all limits"] > 0  # sanity only


@pytest.mark.slow
def test_measure_the_tracker_alone() -> None:
    from sockserve.core.tracker import ConnectionTracker

    pairs = 100_000
    for label, options in (
        ("no limits", {}),
        ("both limits", {"max_connections": 10, "max_connections_per_ip": 10}),
    ):
        tracker = ConnectionTracker(**options)  # type: ignore[arg-type]
        request = object()
        address = ("127.0.0.1", 40000)
        started = time.perf_counter()
        for _ in range(pairs):
            tracker.admit(request, address)
            tracker.release(request)
        per_pair = (time.perf_counter() - started) / pairs
        assert tracker.in_flight == 0
        print(f"\nTRACKER admit+release, {label}: {per_pair * 1e6:.2f} us per connection")
