"""Back-pressure and overflow of the pool, shown with stats() rather than timing.

max_workers=2 and max_pending=1 give room for 3 requests. With overflow="block"
the 4th and later clients wait in the kernel backlog (the loop stops watching
the listener); with overflow="reject" they are accepted and closed at once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

import pytest

import sockserve as socketserver
from helpers.clients import closed_by_peer, connect, recv_line
from helpers.handlers import echo_when_released
from sockserve.testing import serving

WAIT = 10.0
CLIENTS = 8
ROOM = 3  # max_workers + max_pending


def full(st: socketserver.ServerStats) -> bool:
    return st.accepted == ROOM and st.busy_workers == 2 and st.pending == 1


def fill_the_pool(
    server: socketserver.ThreadPoolTCPServer, clients: contextlib.ExitStack
) -> list[socket.socket]:
    """Connect ROOM clients that each send a line, and wait until the pool is full."""
    held = []
    for i in range(ROOM):
        sock = clients.enter_context(connect(server.server_address))
        sock.sendall(b"held %d\n" % i)
        held.append(sock)
    assert server.wait_for(full, WAIT)
    return held


def make_server(
    release: threading.Event,
    server_class: type[socketserver.ThreadPoolTCPServer] = socketserver.ThreadPoolTCPServer,
    **options: object,
) -> socketserver.ThreadPoolTCPServer:
    handler = echo_when_released(release)
    # Back-pressure through the kernel backlog is the "immediate" dispatch's; "auto"
    # holds connections past the pool (tests/hostile, tests/pool/test_auto_dispatch.py).
    options.setdefault("dispatch", "immediate")
    return server_class(("127.0.0.1", 0), handler, max_workers=2, max_pending=1, **options)


def test_block_keeps_extra_clients_in_the_backlog() -> None:
    release = threading.Event()
    server = make_server(release)
    with serving(server), contextlib.ExitStack() as clients:
        socks = []
        for i in range(CLIENTS):
            sock = clients.enter_context(connect(server.server_address))
            sock.sendall(b"client %d\n" % i)
            socks.append(sock)
        assert server.wait_for(lambda st: full(st) and not st.accepting, WAIT)
        stats = server.stats()
        assert stats.accepting is False
        assert stats.active == ROOM
        # The other five stay in the kernel's backlog: nothing more is accepted.
        assert not server.wait_for(lambda st: st.accepted > ROOM, 0.5)
        assert server.stats().rejected == {}
        release.set()
        for i, sock in enumerate(socks):
            assert recv_line(sock) == b"client %d\n" % i
        assert server.wait_for(
            lambda st: st.accepted == CLIENTS and st.completed == CLIENTS and st.accepting, WAIT
        )
        stats = server.stats()
        assert stats.rejected == {}
        assert stats.pending == 0
        assert stats.active == 0


def test_reject_closes_extra_clients_at_once() -> None:
    release = threading.Event()
    server = make_server(release, overflow="reject")
    with serving(server), contextlib.ExitStack() as clients:
        held = fill_the_pool(server, clients)
        # Extra clients say nothing (so closing cannot turn into a reset) and read EOF.
        for _ in range(CLIENTS - ROOM):
            with connect(server.server_address) as extra:
                assert closed_by_peer(extra) == "eof"
        assert server.wait_for(lambda st: st.rejected.get("overflow") == CLIENTS - ROOM, WAIT)
        stats = server.stats()
        assert stats.accepting is True  # reject mode never stops watching the listener
        assert stats.rejected == {"overflow": CLIENTS - ROOM}
        assert stats.active == ROOM
        release.set()
        for i, sock in enumerate(held):
            assert recv_line(sock) == b"held %d\n" % i
        assert server.wait_for(lambda st: st.completed == ROOM and st.active == 0, WAIT)
        assert server.stats().rejected == {"overflow": CLIENTS - ROOM}


def test_reject_request_override_can_say_busy(caplog: pytest.LogCaptureFixture) -> None:
    reasons: list[str] = []

    class BusyServer(socketserver.ThreadPoolTCPServer):
        def reject_request(self, request: object, client_address: object, reason: str) -> None:
            reasons.append(reason)
            request.sendall(b"busy\r\n")  # type: ignore[attr-defined]
            super().reject_request(request, client_address, reason)

    release = threading.Event()
    server = make_server(release, BusyServer, overflow="reject")
    with (
        caplog.at_level(logging.WARNING, logger="sockserve.server"),
        serving(server),
        contextlib.ExitStack() as clients,
    ):
        held = fill_the_pool(server, clients)
        for _ in range(4):
            with connect(server.server_address) as extra:
                assert recv_line(extra) == b"busy\r\n"
                assert closed_by_peer(extra) == "eof"
        assert reasons == ["overflow"] * 4
        release.set()
        for i, sock in enumerate(held):
            assert recv_line(sock) == b"held %d\n" % i
        assert server.wait_for(lambda st: st.completed == ROOM, WAIT)
        assert server.stats().rejected == {"overflow": 4}
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1  # rate-limited: one line for the burst
    assert refusals[0].levelno == logging.WARNING
    assert "overflow" in refusals[0].getMessage()


def test_a_failing_reject_request_still_closes_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenReject(socketserver.ThreadPoolTCPServer):
        def reject_request(self, request: object, client_address: object, reason: str) -> None:
            raise RuntimeError("bug in reject_request")

    release = threading.Event()
    server = make_server(release, BrokenReject, overflow="reject")
    with (
        caplog.at_level(logging.ERROR, logger="sockserve.server"),
        serving(server),
        contextlib.ExitStack() as clients,
    ):
        held = fill_the_pool(server, clients)
        with connect(server.server_address) as extra:
            assert closed_by_peer(extra) == "eof"
        release.set()
        for i, sock in enumerate(held):
            assert recv_line(sock) == b"held %d\n" % i
        assert server.wait_for(lambda st: st.completed == ROOM and st.active == 0, WAIT)
        assert server.stats().rejected == {"overflow": 1}
    assert any(r.exc_info and "bug in reject_request" in str(r.exc_info[1]) for r in caplog.records)
