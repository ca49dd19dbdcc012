"""server.stats(): every field moves as the server works; as_dict() for exporters.

(What stats() costs is measured, not tested: ``python -m benchmarks.micro``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading

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
