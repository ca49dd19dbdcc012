"""drain(): requests in flight finish; nothing new gets in, not even into the backlog."""

from __future__ import annotations

import contextlib
import selectors
import threading
import time

import pytest

import sockserve as socketserver
from helpers.clients import Background, closed_by_peer, connect, recv_line
from helpers.handlers import echo_when_released
from sockserve import State
from sockserve.testing import serving

from ._servers import KINDS, THREAD_KINDS, TwoStep, make_server

WAIT = 10.0
N = 50


def refused(address: tuple[str, int], within: float = 2.0) -> str:
    """How a new connection fares: "refused", "reset", "eof", or "waiting" (in a backlog)."""
    try:
        sock = connect(address, timeout=within)
    except ConnectionRefusedError:
        return "refused"
    with sock:
        try:
            return closed_by_peer(sock, timeout=within)
        except TimeoutError:
            return "waiting"


@pytest.mark.parametrize("kind", KINDS)
def test_in_flight_requests_finish_within_the_deadline(kind: str) -> None:
    server = make_server(kind, TwoStep)
    with serving(server), contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.server_address)) for _ in range(N)]
        for client in clients:
            client.sendall(b"hello\n")
        for client in clients:
            assert recv_line(client) == b"ready\n"
        assert server.wait_for(lambda st: st.active == N, WAIT)
        drain = Background(server.drain, 30.0, name="test-drain")
        assert server.draining.wait(WAIT)
        assert server.state is State.DRAINING
        for i, client in enumerate(clients):
            client.sendall(b"bye %d\n" % i)
        for i, client in enumerate(clients):
            assert recv_line(client) == b"bye %d\n" % i
        report = drain.join(WAIT * 3)
        assert report.in_flight == N
        assert report.finished == N
        assert report.forced == 0
        assert report.still_running == 0
        assert report.idle_closed == 0
        assert report.elapsed < 30.0
        assert server.stats().active == 0
        assert server.state is State.DRAINING
    assert server.state is State.CLOSED


@pytest.mark.parametrize(
    "kind",
    [
        "threading",
        "pool",
        "forking",
    ],
)
def test_new_connections_are_refused_during_a_drain(kind: str) -> None:
    server = make_server(kind, TwoStep)
    with serving(server), connect(server.server_address) as client:
        client.sendall(b"hello\n")
        assert recv_line(client) == b"ready\n"
        drain = Background(server.drain, 30.0, name="test-drain")
        try:
            assert server.draining.wait(WAIT)
            during = refused(server.server_address, within=1.0)
        finally:
            client.sendall(b"bye\n")  # the request in flight ends whatever happened
            assert recv_line(client) == b"bye\n"
            report = drain.join(WAIT * 3)
        assert report.finished == 1
        assert server.stats().accepted == 1
        assert during == "refused"


def test_a_drain_serves_clients_waiting_in_the_backlog() -> None:
    """Back-pressure parks clients in the kernel backlog: a drain takes them in and serves them.

    They connected (and sent their request) before the drain began; resetting
    them would lose what they sent. New connections after that are refused.
    """
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0),
        TwoStep,
        max_workers=1,
        max_pending=0,
        dispatch="immediate",
        min_rate=None,
    )
    with serving(server), contextlib.ExitStack() as stack:
        running = stack.enter_context(connect(server.server_address))
        running.sendall(b"hello\n")
        assert recv_line(running) == b"ready\n"
        queued = [stack.enter_context(connect(server.server_address)) for _ in range(3)]
        for sock in queued:
            sock.sendall(b"hello\n")
        assert server.wait_for(lambda st: st.accepted == 1 and not st.accepting, WAIT)
        drain = Background(server.drain, 30.0, name="test-drain")
        assert server.draining.wait(WAIT)
        assert refused(server.server_address) == "refused"
        assert server.stats().accepted == 4  # the three queued clients were taken in
        running.sendall(b"bye\n")
        assert recv_line(running) == b"bye\n"
        # One worker serves the three in the order the pool picks (under
        # load it takes the newest first): answer whichever says "ready".
        with selectors.DefaultSelector() as selector:
            for sock in queued:
                selector.register(sock, selectors.EVENT_READ)
            for _ in queued:
                ready = selector.select(WAIT)
                assert len(ready) == 1
                sock = ready[0][0].fileobj  # type: ignore[assignment]
                selector.unregister(sock)
                assert recv_line(sock) == b"ready\n"
                sock.sendall(b"bye\n")
                assert recv_line(sock) == b"bye\n"
        report = drain.join(WAIT)
        assert (report.in_flight, report.finished, report.forced) == (4, 4, 0)


def test_a_drain_of_a_server_that_never_served() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), TwoStep)
    try:
        address = server.server_address
        report = server.drain(5.0)
        assert (report.in_flight, report.finished, report.forced) == (0, 0, 0)
        assert refused(address) == "refused"
    finally:
        server.server_close()
    assert server.state is State.CLOSED


def test_pending_pool_requests_finish_when_released_after_the_drain_starts() -> None:
    release = threading.Event()
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), echo_when_released(release), max_workers=2, max_pending=8
    )
    with serving(server), contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.server_address)) for _ in range(10)]
        for i, client in enumerate(clients):
            client.sendall(b"req %d\n" % i)
        assert server.wait_for(
            lambda st: st.accepted == 10 and st.busy_workers == 2 and st.pending == 8, WAIT
        )
        drain = Background(server.drain, 30.0, name="test-drain")
        assert server.draining.wait(WAIT)
        release.set()
        for i, client in enumerate(clients):
            assert recv_line(client) == b"req %d\n" % i
        report = drain.join(WAIT * 3)
        assert (report.in_flight, report.finished, report.forced) == (10, 10, 0)


class Chat(socketserver.StreamRequestHandler):
    """A chat-like session: echoes what arrives until the server drains, then says goodbye."""

    def handle(self) -> None:
        self.wfile.write(b"welcome\n")
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            while not self.server.draining.is_set():
                if selector.select(0.05):
                    data = self.connection.recv(4096)
                    if not data:
                        return
                    self.wfile.write(data)
        self.wfile.write(b"server going away\n")


@pytest.mark.parametrize("kind", THREAD_KINDS)
def test_handlers_that_watch_draining_end_politely_and_count_as_finished(kind: str) -> None:
    server = make_server(kind, Chat)
    with serving(server), contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.server_address)) for _ in range(5)]
        for client in clients:
            assert recv_line(client) == b"welcome\n"
            client.sendall(b"hi\n")
            assert recv_line(client) == b"hi\n"
        started = time.monotonic()
        report = server.drain(30.0)
        assert time.monotonic() - started < 10.0  # well before the deadline
        for client in clients:
            assert recv_line(client) == b"server going away\n"
            assert closed_by_peer(client) == "eof"
        assert (report.in_flight, report.finished, report.forced) == (5, 5, 0)


def test_readable_parked_connections_are_closed_at_drain_start() -> None:
    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), TwoStep, dispatch="readable")
    with serving(server), contextlib.ExitStack() as stack:
        silent = [stack.enter_context(connect(server.server_address)) for _ in range(5)]
        active = stack.enter_context(connect(server.server_address))
        active.sendall(b"hello\n")
        assert recv_line(active) == b"ready\n"
        assert server.wait_for(lambda st: st.accepted == 6, WAIT)
        drain = Background(server.drain, 30.0, name="test-drain")
        for sock in silent:
            assert closed_by_peer(sock, timeout=5.0) == "eof"
        assert server.draining.wait(WAIT)  # set once the drain has counted what is in flight
        active.sendall(b"bye\n")
        assert recv_line(active) == b"bye\n"
        report = drain.join(WAIT)
        assert report.idle_closed == 5, report
        assert (report.in_flight, report.finished, report.forced) == (1, 1, 0)
        assert "5 idle connection(s) closed" in str(report)
        assert server.stats().active == 0


def test_drain_with_an_infinite_timeout_waits_for_every_request() -> None:
    server = make_server("threading", TwoStep)
    with serving(server), connect(server.server_address) as client:
        client.sendall(b"hello\n")
        assert recv_line(client) == b"ready\n"
        drain = Background(server.drain, float("inf"), name="test-drain")
        try:
            assert server.draining.wait(WAIT)
        finally:
            with contextlib.suppress(OSError):
                client.sendall(b"bye\n")
                recv_line(client)
        report = drain.join(WAIT)
        assert (report.in_flight, report.finished, report.forced) == (1, 1, 0)


def test_drain_rejects_a_negative_timeout() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), TwoStep)
    try:
        with pytest.raises(ValueError, match="timeout"):
            server.drain(-1)
        assert server.state is State.IDLE  # nothing was changed
        with connect(server.server_address):
            pass
    finally:
        server.server_close()
