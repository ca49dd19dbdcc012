"""dispatch="readable": silent connections are parked, not handed to workers."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest

import sockserve as socketserver
from helpers.clients import closed_by_peer, connect, recv_line
from helpers.handlers import LineEcho
from sockserve.testing import serving

WAIT = 10.0


class Concurrency:
    """Counts handlers running at once, and the most seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def test_silent_clients_do_not_take_workers() -> None:
    running = Concurrency()

    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            with running:
                for line in self.rfile:
                    self.wfile.write(line)

    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), Echo, max_workers=2, dispatch="readable"
    )
    with serving(server), contextlib.ExitStack() as clients:
        silent = [clients.enter_context(connect(server.server_address)) for _ in range(50)]
        assert server.wait_for(lambda st: st.accepted == 50, WAIT)
        stats = server.stats()
        assert stats.active == 50
        assert stats.workers == 0  # no worker was even started for them
        assert stats.busy_workers == 0
        with connect(server.server_address) as talker:
            talker.settimeout(5.0)  # served promptly, despite 50 silent connections
            talker.sendall(b"hello\n")
            assert recv_line(talker) == b"hello\n"
            assert server.stats().busy_workers <= 1
        assert running.most == 1
        # A parked client that finally speaks is served like any other.
        silent[7].sendall(b"late\n")
        assert recv_line(silent[7]) == b"late\n"
        assert running.most <= 2
        assert server.wait_for(lambda st: st.active == 50, WAIT)  # the talker has gone


def test_first_byte_timeout_closes_silent_connections() -> None:
    first_byte_timeout = 0.3
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0),
        LineEcho,
        max_workers=2,
        dispatch="readable",
        first_byte_timeout=first_byte_timeout,
    )
    with serving(server), contextlib.ExitStack() as clients:
        started = time.monotonic()
        silent = [clients.enter_context(connect(server.server_address)) for _ in range(3)]
        talker = clients.enter_context(connect(server.server_address))
        talker.sendall(b"a")  # its first byte arrives in time
        for sock in silent:
            assert closed_by_peer(sock, timeout=first_byte_timeout + 5.0) == "eof"
        elapsed = time.monotonic() - started
        assert first_byte_timeout * 0.8 <= elapsed < first_byte_timeout + 5.0
        assert server.wait_for(lambda st: st.timed_out == 3 and st.completed == 3, WAIT)
        # The timeout is for the first byte only: a dispatched client may pause longer.
        talker.sendall(b"b\n")
        assert recv_line(talker) == b"ab\n"
        stats = server.stats()
        assert stats.timed_out == 3
        assert stats.active == 1
        assert stats.completed == 3
        assert stats.handler_errors == 0


def test_a_long_first_byte_timeout_still_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: poll() takes at most 2**31-1 ms (~24.8 days); the first-byte thread
    used to pass the whole wait and die with OverflowError, leaving every client parked."""
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0),
        LineEcho,
        dispatch="readable",
        first_byte_timeout=30 * 24 * 3600.0,  # 30 days: odd, but a valid finite value
    )
    with serving(server), connect(server.server_address, timeout=3.0) as client:
        client.sendall(b"hello\n")
        try:
            assert recv_line(client) == b"hello\n"
        finally:
            assert died == []


def test_verify_request_runs_on_the_worker_when_the_first_bytes_come_late() -> None:
    """Bytes there at accept: the stdlib's order. Bytes later: verify after process_request.

    ``verify_request`` may do slow look-ups, so it never runs on the holding
    stage's thread: a connection that waited there is verified by its worker.
    """
    hooks: list[tuple[str, str]] = []

    class Recording(socketserver.ThreadPoolTCPServer):
        def verify_request(self, request: Any, client_address: Any) -> bool:
            hooks.append(("verify_request", threading.current_thread().name))
            return True

        def process_request(self, request: Any, client_address: Any) -> None:
            hooks.append(("process_request", threading.current_thread().name))
            super().process_request(request, client_address)

    server = Recording(("127.0.0.1", 0), LineEcho, max_workers=2, dispatch="readable")
    early = connect(server.server_address)
    early.sendall(b"early\n")  # in the backlog, bytes and all, before serving starts
    with serving(server):
        with early:
            assert recv_line(early) == b"early\n"
        assert [name for name, _thread in hooks] == ["verify_request", "process_request"]
        hooks.clear()
        with connect(server.server_address) as late:
            assert server.wait_for(lambda st: st.preparing == 1, WAIT)
            late.sendall(b"late\n")
            assert recv_line(late) == b"late\n"
        assert [name for name, _thread in hooks] == ["process_request", "verify_request"]
        assert "worker" in hooks[1][1]
