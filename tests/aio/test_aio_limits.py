"""The limits of async servers: max_line, idle_timeout, max_connections(_per_ip)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

import sockserve
from helpers.clients import closed_by_peer, connect, recv_line
from sockserve.testing import serving

from ._support import (
    FLOOD,
    LOOPS,
    WAIT,
    LineEcho,
    Loop,
    Record,
    echo_line,
    flood_handler,
    peer_name,
    tcp_server,
)

IDLE = 0.3


def server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sockserve.server"]


# -- max_line ---------------------------------------------------------------------


def line_echo_with(limit: int | None, seen: Record) -> type[sockserve.AsyncStreamRequestHandler]:
    """LineEcho with its own max_line, reporting what ended it."""

    class Limited(sockserve.AsyncStreamRequestHandler):
        max_line = limit

        async def handle(self) -> None:
            try:
                while line := await self.reader.readline():
                    self.writer.write(line)
                    await self.writer.drain()
            except Exception as exc:
                seen.put(exc)
                raise
            seen.put(None)

    return Limited


@pytest.mark.parametrize("loop", LOOPS)
def test_a_line_longer_than_max_line_ends_the_connection(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Record()
    server = tcp_server(line_echo_with(None, seen), event_loop=loop, max_line=1024)
    with caplog.at_level(logging.INFO, logger="sockserve.server"), serving(server):
        with connect(server.server_address) as client:
            assert echo_line(client, b"x" * 1000 + b"\n") == b"x" * 1000 + b"\n"
            client.sendall(b"y" * 3000 + b"\n")
            assert closed_by_peer(client) in ("eof", "reset")
            peer = peer_name(client)
        assert server.wait_for(lambda st: st.peer_errors == 1 and st.active == 0, WAIT)
        stats = server.stats()
        assert stats.handler_errors == 0
        assert stats.completed == 1
        # The server goes on serving.
        with connect(server.server_address) as client:
            assert echo_line(client, b"next\n") == b"next\n"
    error = seen.get()
    assert isinstance(error, sockserve.LineTooLong)
    assert isinstance(error, ValueError)
    assert error.limit == 1024
    warnings = [r for r in server_records(caplog) if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert peer in warnings[0].getMessage()
    assert "1024" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # a peer's fault: one line, no traceback


def test_the_handlers_max_line_overrides_a_smaller_server_limit() -> None:
    seen = Record()
    server = tcp_server(line_echo_with(8192, seen), max_line=1024)
    with serving(server), connect(server.server_address) as client:
        line = b"z" * 5000 + b"\n"
        assert echo_line(client, line) == line
        client.sendall(b"z" * 10000 + b"\n")
        assert closed_by_peer(client) in ("eof", "reset")
        assert server.wait_for(lambda st: st.peer_errors == 1, WAIT)
    error = seen.get()
    assert isinstance(error, sockserve.LineTooLong)
    assert error.limit == 8192


def test_the_handlers_max_line_overrides_a_larger_server_limit() -> None:
    seen = Record()
    server = tcp_server(line_echo_with(100, seen))  # the server's default is 65536
    with serving(server), connect(server.server_address) as client:
        assert echo_line(client, b"s" * 50 + b"\n") == b"s" * 50 + b"\n"
        client.sendall(b"s" * 300 + b"\n")
        assert closed_by_peer(client) in ("eof", "reset")
        assert server.wait_for(lambda st: st.peer_errors == 1, WAIT)
    error = seen.get()
    assert isinstance(error, sockserve.LineTooLong)
    assert error.limit == 100


@pytest.mark.parametrize("loop", LOOPS)
def test_a_line_of_exactly_max_line_bytes_is_returned(loop: Loop) -> None:
    seen = Record()
    server = tcp_server(line_echo_with(None, seen), event_loop=loop, max_line=1024)
    with serving(server), connect(server.server_address) as client:
        line = b"x" * 1023 + b"\n"  # 1024 bytes, the terminator included
        assert echo_line(client, line) == line
        assert server.stats().peer_errors == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_a_line_one_byte_over_max_line_is_refused(loop: Loop) -> None:
    seen = Record()
    server = tcp_server(line_echo_with(None, seen), event_loop=loop, max_line=1024)
    with serving(server), connect(server.server_address) as client:
        client.sendall(b"x" * 1024 + b"\n")  # 1025 bytes
        try:
            answer = recv_line(client)  # the echo, if the line got through
        except ConnectionResetError:
            answer = b""
        assert answer == b""
        assert server.wait_for(lambda st: st.peer_errors == 1 and st.active == 0, WAIT)
    assert isinstance(seen.get(), sockserve.LineTooLong)


# -- idle_timeout -------------------------------------------------------------------


def watched_echo(ended: Record) -> type[sockserve.AsyncStreamRequestHandler]:
    """LineEcho that reports, from finish(), whether it timed out and what handle raised."""

    class Watched(sockserve.AsyncStreamRequestHandler):
        raised: BaseException | None = None

        async def handle(self) -> None:
            try:
                while line := await self.reader.readline():
                    self.writer.write(line)
                    await self.writer.drain()
            except BaseException as exc:
                self.raised = exc
                raise

        async def finish(self) -> None:
            ended.put((self.timed_out, self.raised))
            await super().finish()

    return Watched


@pytest.mark.parametrize("loop", LOOPS)
def test_a_silent_client_is_cut_after_idle_timeout(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    ended = Record()
    server = tcp_server(watched_echo(ended), event_loop=loop, idle_timeout=IDLE)
    with caplog.at_level(logging.INFO, logger="sockserve.server"), serving(server):
        with connect(server.server_address) as client:
            started = time.monotonic()
            assert closed_by_peer(client, timeout=IDLE + WAIT) in ("eof", "reset")
            elapsed = time.monotonic() - started
            peer = peer_name(client)
        assert IDLE * 0.8 <= elapsed < IDLE + WAIT
        assert server.wait_for(lambda st: st.timed_out == 1 and st.active == 0, WAIT)
        stats = server.stats()
        assert stats.handler_errors == 0
        assert stats.disconnects == 0
        assert stats.completed == 1
    timed_out, raised = ended.get()
    assert timed_out is True
    assert isinstance(raised, TimeoutError)
    lines = [r for r in server_records(caplog) if "timed out" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in server_records(caplog)]
    assert lines[0].levelno == logging.INFO
    assert peer in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert not [r for r in server_records(caplog) if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_keeps_talking_is_not_cut(loop: Loop) -> None:
    ended = Record()
    server = tcp_server(watched_echo(ended), event_loop=loop, idle_timeout=IDLE)
    with serving(server), connect(server.server_address) as client:
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 2 * IDLE:
            line = b"still here %d\n" % sent
            assert echo_line(client, line) == line
            sent += 1
            time.sleep(IDLE / 6)  # the client's pace, well inside the timeout: the point
        assert sent >= 4
        # Past twice the idle timeout, and the connection still serves.
        assert echo_line(client, b"last\n") == b"last\n"
        assert server.stats().timed_out == 0
        assert server.stats().active == 1
        assert ended.empty()
    timed_out, raised = ended.get()
    assert timed_out is False
    assert raised is None


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_stops_reading_is_cut_after_idle_timeout(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    writing = Record()
    seen = Record()

    Flood = flood_handler(seen, writing)

    server = tcp_server(Flood, event_loop=loop, idle_timeout=IDLE, access_log=True)
    with (
        caplog.at_level(logging.INFO, logger="sockserve"),
        serving(server),
        connect(server.server_address) as client,
    ):
        client.sendall(b"go\n")
        assert writing.get() is True
        # The client reads nothing; the handler's blocked drain() is cut.
        assert server.wait_for(lambda st: st.timed_out == 1 and st.active == 0, IDLE + WAIT)
        stats = server.stats()
        assert stats.handler_errors == 0
        assert stats.disconnects == 0
        assert stats.completed == 1
        peer = peer_name(client)
        assert closed_by_peer(client) in ("eof", "reset")
    # The handler can tell its data did not go out: drain() raised, and so did
    # the next write, instead of returning as if the bytes were sent.
    assert isinstance(seen.get(), TimeoutError)
    assert isinstance(seen.get(), TimeoutError)
    [access] = [r.getMessage() for r in caplog.records if r.name == "sockserve.access"]
    fields = access.split()
    assert fields[:2] == [peer, "timeout"], access
    sent = fields[-1].removeprefix("tx=")
    assert sent.isdigit(), access  # read from the kernel before the abort
    assert 0 < int(sent) < FLOOD


STALL = 1.0


@pytest.mark.parametrize("loop", LOOPS)
def test_a_handler_busy_past_idle_timeout_does_not_leave_the_client_hanging(
    loop: Loop,
) -> None:
    class Busy(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            await self.reader.readline()
            await asyncio.sleep(STALL)  # working, not on the socket
            self.writer.write(b"answer\n")
            await self.writer.drain()

    server = tcp_server(Busy, event_loop=loop, idle_timeout=IDLE)
    with serving(server), connect(server.server_address) as client:
        client.sendall(b"question\n")
        started = time.monotonic()
        try:
            answer = recv_line(client)
        except ConnectionResetError:
            answer = b""
        elapsed = time.monotonic() - started
        # Either the server waits for its handler and the answer arrives, or it
        # gives up on the connection, and then the client is told at once.
        if answer != b"answer\n":
            assert answer == b""
            assert elapsed < IDLE + (STALL - IDLE) / 2, f"closed after {elapsed:.2f} s"
        assert server.wait_for(lambda st: st.active == 0, WAIT)


# -- connection limits -----------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "reason"),
    [("max_connections", "max_connections"), ("max_connections_per_ip", "max_connections_per_ip")],
)
def test_connections_past_the_limit_are_refused(
    option: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = tcp_server(LineEcho, **{option: 2})
    with (
        caplog.at_level(logging.WARNING, logger="sockserve.server"),
        serving(server),
        contextlib.ExitStack() as stack,
    ):
        held = [stack.enter_context(connect(server.server_address)) for _ in range(2)]
        assert server.wait_for(lambda st: st.active == 2, WAIT)
        with connect(server.server_address) as third:
            assert closed_by_peer(third) in ("eof", "reset")
        assert server.wait_for(lambda st: st.rejected.get(reason) == 1, WAIT)
        stats = server.stats()
        assert stats.rejected == {reason: 1}
        assert stats.accepted == 2
        assert stats.active == 2
        # The admitted two are served as before.
        for i, client in enumerate(held):
            assert echo_line(client, b"held %d\n" % i) == b"held %d\n" % i
        held[0].close()
        assert server.wait_for(lambda st: st.active == 1, WAIT)
        # A place is free again.
        with connect(server.server_address) as fourth:
            assert echo_line(fourth, b"fourth\n") == b"fourth\n"
    refusals = [r for r in server_records(caplog) if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert reason in refusals[0].getMessage()
