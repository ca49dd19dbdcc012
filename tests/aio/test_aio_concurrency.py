"""Many connections at once on one event loop thread: no thread per connection."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading

import pytest

from helpers.clients import connect, recv_line
from sockserve.testing import serving

from ._support import LOOPS, WAIT, LineEcho, Loop, tcp_server

CLIENTS = 500
#: Descriptors each held connection costs: the client's socket, the server's
#: accepted socket and the duplicate the event loop owns.
FDS_PER_CLIENT = 3
#: Room for everything else the process has open (the suite, the interpreter).
FD_MARGIN = 200


@pytest.fixture
def client_count() -> int:
    """CLIENTS, or as many as the descriptor limit allows (raised to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CLIENTS * FDS_PER_CLIENT + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        soft = new_soft
    if soft == resource.RLIM_INFINITY:
        return CLIENTS
    count = min(CLIENTS, (soft - FD_MARGIN) // FDS_PER_CLIENT)
    assert count >= 50, f"RLIMIT_NOFILE {soft} leaves room for only {count} clients"
    return count


@pytest.mark.parametrize("loop", LOOPS)
def test_hundreds_of_held_connections_are_all_served_without_a_thread_each(
    loop: Loop, client_count: int
) -> None:
    before = set(threading.enumerate())
    server = tcp_server(LineEcho, event_loop=loop)
    with serving(server), contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(connect(server.server_address, timeout=WAIT))
            for _ in range(client_count)
        ]
        # Every connection is held open at once, all being served.
        assert server.wait_for(
            lambda st: st.active == client_count and st.workers == client_count, WAIT
        ), server.stats()
        stats = server.stats()
        assert stats.accepted == client_count
        assert stats.rejected == {}
        for i, client in enumerate(clients):
            client.sendall(b"client %d\n" % i)
        for i, client in enumerate(clients):
            assert recv_line(client) == b"client %d\n" % i
        # Still all open, and all served by the one thread running serve_forever
        # (the event loop accepts and serves on it).
        assert server.stats().active == client_count
        new_threads = [t for t in threading.enumerate() if t not in before]
        names = sorted(t.name for t in new_threads)
        assert names == ["sockserve-serving-AsyncTCPServer"], names
        for client in clients:
            client.shutdown(socket.SHUT_WR)
        for client in clients:
            assert client.recv(1) == b""  # the handler saw EOF and closed
        assert server.wait_for(lambda st: st.active == 0 and st.completed == client_count, WAIT), (
            server.stats()
        )
        final = server.stats()
        assert final.handler_errors == 0
        assert final.disconnects == 0
