"""drain() at its deadline: what is left is aborted; force_drain() cuts the wait short."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import pytest

import sockserve as socketserver
from helpers.clients import Background, closed_by_peer, connect, recv_line
from sockserve import State
from sockserve.testing import serving

from ._servers import KINDS, Stuck, make_server

WAIT = 10.0
DEADLINE = 0.5


def stuck_handler() -> type[Stuck]:
    """A fresh Stuck subclass recording what its recv returned (in this process)."""
    return type("StuckHere", (Stuck,), {"returned": []})


def pid_of(client: object) -> int:
    return int(recv_line(client))  # type: ignore[arg-type]


def assert_reaped(pid: int) -> None:
    """The child is gone: killed and reaped by the server, not left a zombie."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_handler_that_never_finishes_is_forced_at_the_deadline(kind: str) -> None:
    handler = stuck_handler()
    server = make_server(kind, handler)
    with serving(server), connect(server.server_address) as client:
        pid = pid_of(client)
        assert server.wait_for(lambda st: st.active == 1, WAIT)
        started = time.monotonic()
        report = server.drain(DEADLINE)
        elapsed = time.monotonic() - started
        assert report.in_flight == 1
        assert report.finished == 0
        assert report.forced == 1
        assert report.still_running == 0
        # Aborted at the deadline minus the abort grace (a quarter of it); back by the deadline.
        assert DEADLINE * 0.7 <= elapsed < DEADLINE + 1.0
        assert "1 forced" in str(report)
        assert closed_by_peer(client) in ("eof", "reset")
        assert server.stats().active == 0
        if kind == "forking":
            assert pid != os.getpid()
            assert_reaped(pid)
            assert not server.active_children
        else:
            assert handler.returned == [b""]  # the socket was shut down under the recv


@pytest.mark.parametrize("kind", KINDS)
def test_force_drain_cuts_a_long_drain_short(kind: str) -> None:
    server = make_server(kind, stuck_handler())
    with serving(server), connect(server.server_address) as client:
        pid = pid_of(client)
        drain = Background(server.drain, 60.0, name="test-drain")
        assert server.draining.wait(WAIT)
        server.force_drain()
        report = drain.join(WAIT + server.drain_abort_grace)
        assert report.elapsed < 30.0
        assert (report.in_flight, report.finished, report.forced) == (1, 0, 1)
        assert report.still_running == 0
        assert closed_by_peer(client) in ("eof", "reset")
        if kind == "forking":
            assert_reaped(pid)


@pytest.mark.parametrize("kind", ["threading", "pool"])
def test_a_handler_that_ignores_the_abort_is_reported_still_running(kind: str) -> None:
    release = threading.Event()

    class Deaf(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"in\n")
            release.wait(WAIT * 3)  # not on the socket: the abort cannot reach it

    server = make_server(kind, Deaf)
    server.drain_abort_grace = 0.2
    try:
        with serving(server), connect(server.server_address) as client:
            assert recv_line(client) == b"in\n"
            report = server.drain(0.2)
            assert (report.in_flight, report.forced, report.still_running) == (1, 1, 1)
            assert "1 still running" in str(report)
            release.set()
            assert server.wait_for(lambda st: st.active == 0, WAIT)
    finally:
        release.set()


def test_pool_requests_still_queued_at_the_deadline_are_dropped() -> None:
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0),
        stuck_handler(),
        max_workers=1,
        max_pending=2,
        dispatch="immediate",
        min_rate=None,  # the stuck handler is what this test is about
    )
    with serving(server), contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.server_address)) for _ in range(3)]
        assert server.wait_for(
            lambda st: st.accepted == 3 and st.busy_workers == 1 and st.pending == 2, WAIT
        )
        report = server.drain(DEADLINE)
        assert (report.in_flight, report.finished, report.forced) == (3, 0, 3)
        assert report.still_running == 0
        pid_of(clients[0])  # the one that ran said hello first
        for client in clients:
            assert closed_by_peer(client) in ("eof", "reset")
        stats = server.stats()
        assert stats.active == 0
        assert stats.pending == 0


class CappedForking(socketserver.ForkingTCPServer):
    max_children = 2


def test_a_drain_at_max_children_still_keeps_its_deadline() -> None:
    server = CappedForking(("127.0.0.1", 0), stuck_handler())
    pids: list[int] = []
    with serving(server), contextlib.ExitStack() as stack:
        for _ in range(2):
            pids.append(pid_of(stack.enter_context(connect(server.server_address))))
        drain = Background(server.drain, DEADLINE, name="test-drain")
        try:
            report = drain.join(5.0)
        finally:
            if not drain.done:  # unblock the serving loop, then let the drain end
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                drain.join(WAIT)
        assert (report.in_flight, report.forced, report.still_running) == (2, 2, 0)


def test_state_moves_serving_draining_closed() -> None:
    server = make_server("pool", stuck_handler())
    assert server.state is State.IDLE
    assert server.stats().state == "idle"
    with serving(server, close=False), connect(server.server_address) as client:
        assert server.wait_for(lambda st: st.state == "serving" and st.accepting, WAIT)
        assert server.state is State.SERVING
        pid_of(client)
        drain = Background(server.drain, 60.0, name="test-drain")
        assert server.draining.wait(WAIT)
        assert server.state is State.DRAINING
        assert server.stats().state == "draining"
        assert server.stats().accepting is False
        server.force_drain()
        drain.join(WAIT)
        assert server.state is State.DRAINING  # until server_close
        with pytest.raises(RuntimeError, match="draining"):
            server.serve_forever()
    server.server_close()
    assert server.state is State.CLOSED
    assert server.stats().state == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        server.drain(1.0)


def test_drain_from_the_serving_thread_raises_runtime_error() -> None:
    errors: list[BaseException] = []

    class DrainFromHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                self.server.drain(1.0)
            except RuntimeError as exc:
                errors.append(exc)
            self.request.sendall(b"done\n")

    server = socketserver.TCPServer(("127.0.0.1", 0), DrainFromHandler)
    with serving(server):
        with connect(server.server_address) as client:
            assert recv_line(client) == b"done\n"
        assert len(errors) == 1
        assert "serving thread" in str(errors[0])
        assert server.state is State.SERVING  # nothing changed: it still serves
        assert not server.draining.is_set()
        with connect(server.server_address) as client:
            assert recv_line(client) == b"done\n"
        assert len(errors) == 2
