"""idle_timeout: a silent connection (or a stalled partial line) is cut; a talking one is not.

These tests are about time, so they bound it generously: the cut happens no
earlier than the timeout and well within timeout + a few seconds.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

import sockserve as socketserver
from helpers.clients import closed_by_peer, connect, recv_line
from sockserve.testing import serving

IDLE = 0.3
MARGIN = 5.0
WAIT = 10.0

SERVERS = [socketserver.ThreadingTCPServer, socketserver.ThreadPoolTCPServer]


def recording_echo(seen: list[BaseException]) -> type[socketserver.StreamRequestHandler]:
    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                for line in self.rfile:
                    self.wfile.write(line)
            except BaseException as exc:
                seen.append(exc)
                raise

    return Echo


@pytest.mark.parametrize("server_class", SERVERS)
def test_a_silent_client_is_cut_after_idle_timeout(
    server_class: type[socketserver.TCPServer], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[BaseException] = []
    server = server_class(("127.0.0.1", 0), recording_echo(seen), idle_timeout=IDLE)
    with caplog.at_level(logging.INFO, logger="sockserve.server"), serving(server):
        with connect(server.server_address) as client:
            started = time.monotonic()
            assert closed_by_peer(client, timeout=IDLE + MARGIN) == "eof"
            elapsed = time.monotonic() - started
        assert IDLE * 0.8 <= elapsed < IDLE + MARGIN
        assert server.wait_for(lambda st: st.timed_out == 1 and st.active == 0, WAIT)
        stats = server.stats()
        assert stats.handler_errors == 0
        assert stats.completed == 1
    assert len(seen) == 1
    assert isinstance(seen[0], TimeoutError)
    lines = [r for r in caplog.records if "timed out" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    assert lines[0].exc_info is None


@pytest.mark.parametrize("server_class", SERVERS)
def test_a_client_that_keeps_talking_is_not_cut(
    server_class: type[socketserver.TCPServer],
) -> None:
    seen: list[BaseException] = []
    server = server_class(("127.0.0.1", 0), recording_echo(seen), idle_timeout=IDLE)
    pace = threading.Event()  # never set: wait() is the pause between lines
    with serving(server), connect(server.server_address) as client:
        started = time.monotonic()
        count = 0
        # Talk for three idle timeouts, never silent for more than a third of one.
        while time.monotonic() - started < 3 * IDLE:
            client.sendall(b"line %d\n" % count)
            assert recv_line(client) == b"line %d\n" % count
            count += 1
            pace.wait(IDLE / 3)
        assert count >= 3
        assert server.stats().timed_out == 0
        assert server.stats().active == 1
    assert seen == []


@pytest.mark.parametrize("server_class", SERVERS)
def test_a_stalled_partial_line_is_cut_at_idle_timeout(
    server_class: type[socketserver.TCPServer],
) -> None:
    """Slowloris, simplest form: half a request line, then nothing."""
    seen: list[BaseException] = []
    server = server_class(("127.0.0.1", 0), recording_echo(seen), idle_timeout=IDLE)
    with serving(server):
        clients = [connect(server.server_address) for _ in range(5)]
        try:
            for client in clients:
                client.sendall(b"GET / HTT")
            started = time.monotonic()
            for client in clients:
                assert closed_by_peer(client, timeout=IDLE + MARGIN) in ("eof", "reset")
            assert time.monotonic() - started < IDLE + MARGIN
        finally:
            for client in clients:
                client.close()
        assert server.wait_for(lambda st: st.timed_out == 5 and st.active == 0, WAIT)
    assert len(seen) == 5
    assert all(isinstance(exc, TimeoutError) for exc in seen)


def test_a_handler_timeout_attribute_overrides_idle_timeout() -> None:
    """StreamRequestHandler.timeout is applied after idle_timeout, as in the stdlib."""
    seen: list[BaseException] = []

    class Patient(recording_echo(seen)):  # type: ignore[misc,valid-type]
        timeout = 60.0

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Patient, idle_timeout=IDLE)
    release = threading.Event()
    with serving(server), connect(server.server_address) as client:
        # Silent for more than idle_timeout: the handler's own timeout applies instead.
        assert not release.wait(IDLE * 3)
        client.sendall(b"still here\n")
        assert recv_line(client) == b"still here\n"
        assert server.stats().timed_out == 0
    assert seen == []
