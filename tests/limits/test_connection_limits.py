"""max_connections and max_connections_per_ip: refused at once, counted, logged (rate-limited)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import pytest

import sockserve as socketserver
from helpers.clients import closed_by_peer, connect, exchange, short_tempdir
from helpers.handlers import LineEcho
from sockserve.testing import serving

WAIT = 10.0

SERVERS = [socketserver.ThreadingTCPServer, socketserver.ThreadPoolTCPServer]


def second_loopback_address() -> str:
    """127.0.0.2, usable as a client source address (Linux routes all of 127/8 on lo)."""
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.2", 0))
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.2: {exc}")
    finally:
        probe.close()
    return "127.0.0.2"


@pytest.mark.parametrize("server_class", SERVERS)
def test_max_connections_refuses_the_next_one_at_once(
    server_class: type[socketserver.TCPServer],
) -> None:
    server = server_class(("127.0.0.1", 0), LineEcho, max_connections=2)
    with serving(server), contextlib.ExitStack() as clients:
        first = clients.enter_context(connect(server.server_address))
        second = clients.enter_context(connect(server.server_address))
        assert exchange(first) == b"ping\n"
        assert exchange(second) == b"ping\n"
        with connect(server.server_address) as third:
            assert closed_by_peer(third) == "eof"
        assert server.wait_for(lambda st: st.rejected.get("max_connections") == 1, WAIT)
        stats = server.stats()
        assert stats.rejected == {"max_connections": 1}
        assert stats.accepted == 2
        assert stats.active == 2
        # A slot frees up: the next client is admitted and served.
        first.close()
        assert server.wait_for(lambda st: st.active == 1, WAIT)
        with connect(server.server_address) as fourth:
            assert exchange(fourth, b"admitted\n") == b"admitted\n"
        assert exchange(second) == b"ping\n"
        assert server.stats().rejected == {"max_connections": 1}


def test_max_connections_counts_parked_readable_connections() -> None:
    """dispatch="readable" has no pool back-pressure: max_connections is its bound."""
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), LineEcho, dispatch="readable", max_connections=3
    )
    with serving(server), contextlib.ExitStack() as clients:
        for _ in range(3):
            clients.enter_context(connect(server.server_address))
        assert server.wait_for(lambda st: st.accepted == 3, WAIT)
        with connect(server.server_address) as extra:
            assert closed_by_peer(extra) == "eof"
        assert server.wait_for(lambda st: st.rejected == {"max_connections": 1}, WAIT)


@pytest.mark.parametrize("server_class", SERVERS)
def test_max_connections_per_ip(server_class: type[socketserver.TCPServer]) -> None:
    other_ip = second_loopback_address()
    server = server_class(("127.0.0.1", 0), LineEcho, max_connections_per_ip=2)
    with serving(server), contextlib.ExitStack() as clients:
        a1 = clients.enter_context(connect(server.server_address, source_ip="127.0.0.1"))
        a2 = clients.enter_context(connect(server.server_address, source_ip="127.0.0.1"))
        assert exchange(a1) == b"ping\n"
        assert exchange(a2) == b"ping\n"
        with connect(server.server_address, source_ip="127.0.0.1") as a3:
            assert closed_by_peer(a3) == "eof"
        # Another address has its own allowance.
        b1 = clients.enter_context(connect(server.server_address, source_ip=other_ip))
        b2 = clients.enter_context(connect(server.server_address, source_ip=other_ip))
        assert exchange(b1) == b"ping\n"
        assert exchange(b2) == b"ping\n"
        with connect(server.server_address, source_ip=other_ip) as b3:
            assert closed_by_peer(b3) == "eof"
        assert server.wait_for(lambda st: st.rejected.get("max_connections_per_ip") == 2, WAIT)
        assert server.stats().active == 4
        a1.close()
        assert server.wait_for(lambda st: st.active == 3, WAIT)
        with connect(server.server_address, source_ip="127.0.0.1") as a4:
            assert exchange(a4, b"admitted\n") == b"admitted\n"
        assert server.stats().rejected == {"max_connections_per_ip": 2}
    assert not server._pipeline.tracker._per_ip  # every entry went away with its connections


def test_per_ip_limit_does_not_apply_to_unix_peers() -> None:
    with short_tempdir() as tmp:
        server = socketserver.ThreadingUnixStreamServer(
            os.path.join(tmp, "s"), LineEcho, max_connections_per_ip=1
        )
        with serving(server), contextlib.ExitStack() as clients:
            socks = [
                clients.enter_context(connect(server.server_address, family=socket.AF_UNIX))
                for _ in range(3)
            ]
            for sock in socks:
                assert exchange(sock) == b"ping\n"
            assert server.stats().rejected == {}


def test_refusals_are_logged_at_warning_and_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), LineEcho, max_connections=1)
    with (
        caplog.at_level(logging.DEBUG, logger="sockserve"),
        serving(server),
        connect(server.server_address) as holder,
    ):
        assert exchange(holder) == b"ping\n"
        for _ in range(100):
            with connect(server.server_address) as refused:
                assert closed_by_peer(refused) == "eof"
        assert server.wait_for(lambda st: st.rejected.get("max_connections") == 100, WAIT)
    refusals = [r for r in caplog.records if "refused connection" in r.getMessage()]
    # One line per reason per 10 s; the test may straddle one boundary at most.
    assert 1 <= len(refusals) <= 2
    assert all(r.levelno == logging.WARNING for r in refusals)
    assert "max_connections" in refusals[0].getMessage()
    assert "127.0.0.1" in refusals[0].getMessage()
