"""Drain and close for async servers: finish what runs, cancel what does not, stop the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time

import pytest

import sockserve
from helpers.clients import Background, closed_by_peer, connect, recv_line
from sockserve import State
from sockserve.testing import serving

from ._support import LOOPS, WAIT, LineEcho, Loop, Record, echo_line, tcp_server

DEADLINE = 0.3


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "loop" in t.name]


def assert_refused(server: sockserve.AsyncTCPServer) -> None:
    with pytest.raises(ConnectionRefusedError):
        connect(server.server_address).close()


class TwoStep(sockserve.AsyncStreamRequestHandler):
    """Reads a line, answers "ready", then echoes the next line and ends."""

    async def handle(self) -> None:
        await self.reader.readline()
        self.writer.write(b"ready\n")
        await self.writer.drain()
        self.writer.write(await self.reader.readline())


@pytest.mark.parametrize("loop", LOOPS)
def test_drain_lets_a_request_in_flight_finish(loop: Loop) -> None:
    server = tcp_server(TwoStep, event_loop=loop)
    with serving(server), connect(server.server_address) as client:
        assert echo_line(client, b"first\n") == b"ready\n"
        drain = Background(server.drain, WAIT, name="test-drain")
        assert server.draining.wait(WAIT)
        assert server.state is State.DRAINING
        assert_refused(server)  # the listener is closed from the drain's start
        assert echo_line(client, b"second\n") == b"second\n"
        report = drain.join(WAIT)
        assert closed_by_peer(client) == "eof"
        assert (report.in_flight, report.finished, report.forced) == (1, 1, 0)
        assert report.still_running == 0
        assert report.elapsed < WAIT
        assert_refused(server)
        stats = server.stats()
        assert stats.active == 0
        assert stats.timed_out == 0
        assert stats.handler_errors == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_drain_cancels_a_handler_that_never_ends(loop: Loop) -> None:
    outcome = Record()

    class Forever(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            self.writer.write(b"in\n")
            await self.writer.drain()
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                outcome.put("cancelled")
                raise

        async def finish(self) -> None:
            outcome.put("finish")
            await super().finish()

    server = tcp_server(Forever, event_loop=loop)
    with serving(server), connect(server.server_address) as client:
        assert recv_line(client) == b"in\n"
        assert server.wait_for(lambda st: st.active == 1, WAIT)
        started = time.monotonic()
        report = server.drain(DEADLINE)
        elapsed = time.monotonic() - started
        assert (report.in_flight, report.finished, report.forced) == (1, 0, 1)
        assert report.still_running == 0
        assert DEADLINE * 0.7 <= elapsed < DEADLINE + 1.0  # back by its deadline
        assert outcome.get() == "cancelled"
        assert outcome.get() == "finish"  # finish() still ran
        assert closed_by_peer(client) in ("eof", "reset")
        stats = server.stats()
        assert stats.active == 0
        assert stats.handler_errors == 0  # a cancel at the deadline is not a handler bug
        assert_refused(server)


@pytest.mark.parametrize("loop", LOOPS)
def test_drain_ends_a_handler_reading_from_a_silent_client(loop: Loop) -> None:
    outcome = Record()

    class Reader(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            self.writer.write(b"in\n")
            await self.writer.drain()
            try:
                outcome.put(await self.reader.read(1))
            except asyncio.CancelledError:
                outcome.put("cancelled")
                raise

    server = tcp_server(Reader, event_loop=loop)
    with serving(server), connect(server.server_address) as client:
        assert recv_line(client) == b"in\n"
        report = server.drain(DEADLINE)
        assert (report.in_flight, report.finished, report.forced) == (1, 0, 1)
        assert report.still_running == 0
        # The socket was shut down under the read (EOF), or the task cancelled.
        assert outcome.get() in (b"", "cancelled")
        assert closed_by_peer(client) in ("eof", "reset")
        assert server.stats().active == 0
        assert_refused(server)


def test_drain_lets_many_requests_in_flight_finish() -> None:
    count = 20
    server = tcp_server(TwoStep)
    with serving(server), contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.server_address)) for _ in range(count)]
        for client in clients:
            assert echo_line(client, b"first\n") == b"ready\n"
        drain = Background(server.drain, WAIT, name="test-drain")
        assert server.draining.wait(WAIT)
        for i, client in enumerate(clients):
            assert echo_line(client, b"second %d\n" % i) == b"second %d\n" % i
        report = drain.join(WAIT)
        assert (report.in_flight, report.finished, report.forced) == (count, count, 0)
        for client in clients:
            assert closed_by_peer(client) == "eof"


def test_force_drain_cuts_a_long_drain_short() -> None:
    class Forever(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            self.writer.write(b"in\n")
            await asyncio.Event().wait()

    server = tcp_server(Forever)
    with serving(server), connect(server.server_address) as client:
        assert recv_line(client) == b"in\n"
        drain = Background(server.drain, 60.0, name="test-drain")
        assert server.draining.wait(WAIT)
        server.force_drain()
        report = drain.join(WAIT + server.drain_abort_grace)
        assert report.elapsed < WAIT
        assert (report.in_flight, report.finished, report.forced) == (1, 0, 1)
        assert report.still_running == 0
        assert closed_by_peer(client) in ("eof", "reset")


@pytest.mark.parametrize("loop", LOOPS)
def test_server_close_without_clients_returns_promptly(loop: Loop) -> None:
    before = loop_threads()
    server = tcp_server(LineEcho, event_loop=loop)
    with serving(server, close=False):
        pass
    started = time.monotonic()
    Background(server.server_close, name="test-close").join(WAIT)
    assert time.monotonic() - started < 2.0
    assert loop_threads() == before
    assert server.state is State.CLOSED


@pytest.mark.parametrize("loop", LOOPS)
def test_the_event_loop_runs_on_the_serving_thread_and_server_close_closes_it(loop: Loop) -> None:
    before = set(threading.enumerate())
    server = tcp_server(LineEcho, event_loop=loop)
    with serving(server, close=False):
        with connect(server.server_address) as client:
            assert echo_line(client, b"hi\n") == b"hi\n"
            started = [t.name for t in threading.enumerate() if t not in before]
            assert started == ["sockserve-serving-AsyncTCPServer"]  # no thread of its own
        assert server.wait_for(lambda st: st.active == 0 and st.completed == 1, WAIT)
    event_loop = server._tasks.loop
    Background(server.server_close, name="test-close").join(WAIT)
    assert event_loop.is_closed()


def test_server_close_waits_for_the_connections_being_served() -> None:
    server = tcp_server(LineEcho)
    assert server.block_on_close is True
    with connect(server.server_address) as client:
        with serving(server, close=False):
            assert echo_line(client, b"hi\n") == b"hi\n"
        closer = Background(server.server_close, name="test-close")
        # The handler still waits for the client's next line: server_close waits too.
        time.sleep(0.2)
        assert not closer.done
        assert server.stats().active == 1
    # The client closed its side: the handler ends at EOF and server_close returns.
    closer.join(WAIT)
    stats = server.stats()
    assert (stats.active, stats.completed, stats.handler_errors) == (0, 1, 0)
    assert not [t for t in loop_threads() if "AsyncTCPServer" in t.name]


@pytest.mark.parametrize("loop", LOOPS)
def test_server_close_without_block_on_close_cancels_what_runs(loop: Loop) -> None:
    class NoWait(sockserve.AsyncTCPServer):
        block_on_close = False

    before = loop_threads()
    server = NoWait(("127.0.0.1", 0), LineEcho, event_loop=loop)
    with connect(server.server_address) as client:
        with serving(server, close=False):
            assert echo_line(client, b"hi\n") == b"hi\n"
        started = time.monotonic()
        Background(server.server_close, name="test-close").join(WAIT)
        assert time.monotonic() - started < 2.0
        assert closed_by_peer(client) in ("eof", "reset")
    assert server.stats().active == 0
    assert loop_threads() == before


class Mixed(sockserve.AsyncStreamRequestHandler):
    """Echoes lines; "boom" raises."""

    async def handle(self) -> None:
        while line := await self.reader.readline():
            if line == b"boom\n":
                raise ValueError("on purpose")
            self.writer.write(line)
            await self.writer.drain()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def every_way_to_end(server: sockserve.AsyncTCPServer) -> None:
    """Connections ending normally, by an error, a long line, a timeout and a refusal."""
    for _ in range(10):
        with connect(server.server_address) as client:
            assert echo_line(client, b"ok\n") == b"ok\n"
        # max_connections is 2: let the server release each one before the next.
        assert server.wait_for(lambda st: st.active == 0, WAIT)
    with connect(server.server_address) as client:
        client.sendall(b"boom\n")
        assert closed_by_peer(client) == "eof"
    with connect(server.server_address) as client:
        client.sendall(b"z" * 300 + b"\n")
        assert closed_by_peer(client) in ("eof", "reset")
    with connect(server.server_address) as client:
        assert closed_by_peer(client) in ("eof", "reset")  # silent: idle timeout
    # The client sees the end before the server releases the connection's place.
    assert server.wait_for(lambda st: st.active == 0, WAIT)
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(connect(server.server_address)) for _ in range(2)]
        assert server.wait_for(lambda st: st.active == 2, WAIT)
        with connect(server.server_address) as refused:
            assert closed_by_peer(refused) in ("eof", "reset")
        for client in held:
            client.shutdown(socket.SHUT_WR)
            assert closed_by_peer(client) == "eof"
    assert server.wait_for(lambda st: st.active == 0, WAIT)


@pytest.mark.parametrize("loop", LOOPS)
def test_no_descriptor_is_leaked_whatever_ends_a_connection(loop: Loop) -> None:
    def make() -> sockserve.AsyncTCPServer:
        return tcp_server(Mixed, event_loop=loop, max_line=100, idle_timeout=0.2, max_connections=2)

    # A first server: whatever the event loop opens once per process is opened now.
    warm_up = make()
    with serving(warm_up):
        every_way_to_end(warm_up)
    before = open_descriptors()
    server = make()
    with serving(server):
        every_way_to_end(server)
        serving_one_round = open_descriptors()
        every_way_to_end(server)
        assert open_descriptors() == serving_one_round
        stats = server.stats()
        assert stats.accepted == 2 * 15
        assert stats.rejected == {"max_connections": 2}
        assert (stats.handler_errors, stats.peer_errors) == (2, 2)
        # The silent client times out each round; on a loaded machine a held
        # client may too (0.2 s is short), which changes nothing for the leak check.
        assert stats.timed_out >= 2
    assert open_descriptors() == before
