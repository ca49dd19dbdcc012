"""Handler errors are logged and counted; servers refuse handlers and options they cannot run."""

from __future__ import annotations

import logging
import sys

import pytest

import sockserve
from helpers.clients import closed_by_peer, connect
from sockserve.strategies.eventloop import loop_factory
from sockserve.testing import serving

from ._support import LOOPS, WAIT, LineEcho, Loop, Record, echo_line, peer_name, tcp_server

# -- a handler that raises -----------------------------------------------------------


def failing_handler(steps: Record) -> type[sockserve.AsyncStreamRequestHandler]:
    """Echoes lines; "boom" makes handle() raise ValueError. Reports each step."""

    class Failing(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            while line := await self.reader.readline():
                if line == b"boom\n":
                    steps.put("raising")
                    raise ValueError("the handler broke on purpose")
                self.writer.write(line)
                await self.writer.drain()

        async def finish(self) -> None:
            steps.put("finish")
            await super().finish()

    return Failing


@pytest.mark.parametrize("loop", LOOPS)
def test_a_handler_error_is_logged_counted_and_the_server_goes_on(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    steps = Record()
    server = tcp_server(failing_handler(steps), event_loop=loop)
    with caplog.at_level(logging.INFO, logger="sockserve.server"), serving(server):
        with connect(server.server_address) as client:
            assert echo_line(client, b"fine\n") == b"fine\n"
            client.sendall(b"boom\n")
            assert closed_by_peer(client) == "eof"
            peer = peer_name(client)
        assert steps.get() == "raising"
        assert steps.get() == "finish"  # finish() ran after handle() raised
        assert server.wait_for(lambda st: st.handler_errors == 1 and st.active == 0, WAIT)
        # The next client is served as usual.
        with connect(server.server_address) as client:
            assert echo_line(client, b"again\n") == b"again\n"
        assert server.wait_for(lambda st: st.completed == 2 and st.active == 0, WAIT)
        stats = server.stats()
        assert stats.handler_errors == 1
        assert stats.peer_errors == 0
        assert stats.timed_out == 0
    errors = [
        r for r in caplog.records if r.name == "sockserve.server" and r.levelno >= logging.WARNING
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    record = errors[0]
    assert record.levelno == logging.ERROR
    assert peer in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert "the handler broke on purpose" in caplog.text
    assert "Traceback" in caplog.text


def test_an_error_in_setup_is_logged_and_skips_handle() -> None:
    steps = Record()

    class BadSetup(sockserve.AsyncStreamRequestHandler):
        async def setup(self) -> None:
            steps.put("setup")
            raise RuntimeError("setup failed")

        async def handle(self) -> None:
            steps.put("handle")

    server = tcp_server(BadSetup)
    with serving(server):
        with connect(server.server_address) as client:
            assert closed_by_peer(client) == "eof"
        assert server.wait_for(lambda st: st.handler_errors == 1 and st.active == 0, WAIT)
        assert steps.get() == "setup"
        assert steps.empty()
        # The loop thread survived: the next handler runs.
        with connect(server.server_address) as client:
            assert closed_by_peer(client) == "eof"
        assert server.wait_for(lambda st: st.handler_errors == 2 and st.active == 0, WAIT)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_resets_is_a_disconnect_not_an_error(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    got_line = Record()

    class WritesForever(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            await self.reader.readline()
            got_line.put(True)
            while True:
                self.writer.write(b"x" * 65536)
                await self.writer.drain()

    server = tcp_server(WritesForever, event_loop=loop)
    with caplog.at_level(logging.INFO, logger="sockserve.server"), serving(server):
        with connect(server.server_address) as client:
            client.sendall(b"go\n")
            assert got_line.get() is True
            assert client.recv(1) == b"x"
            # Unread data in the receive buffer: closing sends a reset.
        assert server.wait_for(lambda st: st.disconnects == 1 and st.active == 0, WAIT)
        assert server.stats().handler_errors == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- what servers refuse ------------------------------------------------------------


class SyncEcho(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


def test_an_async_server_refuses_a_sync_handler() -> None:
    with pytest.raises(TypeError, match="SyncEcho"):
        sockserve.AsyncTCPServer(("127.0.0.1", 0), SyncEcho)
    with pytest.raises(TypeError, match="SyncEcho"):
        sockserve.AsyncUnixStreamServer("/nonexistent/never-bound", SyncEcho)


@pytest.mark.parametrize(
    "server_class",
    [sockserve.TCPServer, sockserve.ThreadPoolTCPServer, sockserve.ThreadingTCPServer],
)
def test_sync_servers_refuse_an_async_handler(server_class: type[sockserve.TCPServer]) -> None:
    with pytest.raises(TypeError, match="AsyncTCPServer") as raised:
        server_class(("127.0.0.1", 0), LineEcho)
    assert "LineEcho" in str(raised.value)


def test_a_bogus_event_loop_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="event_loop"):
        sockserve.AsyncTCPServer(("127.0.0.1", 0), LineEcho, event_loop="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event_loop"):
        loop_factory("bogus")


def test_a_bogus_event_loop_class_attribute_is_a_value_error() -> None:
    class Bogus(sockserve.AsyncTCPServer):
        event_loop = "bogus"

    with pytest.raises(ValueError, match="event_loop"):
        Bogus(("127.0.0.1", 0), LineEcho)


def test_uvloop_demanded_but_missing_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    with pytest.raises(ValueError, match="uvloop"):
        sockserve.AsyncTCPServer(("127.0.0.1", 0), LineEcho, event_loop="uvloop")
    # "auto" falls back to the standard library's loop, and serves on it.
    server = tcp_server(LineEcho, event_loop="auto")
    assert server.event_loop_kind == "asyncio"
    with serving(server), connect(server.server_address) as client:
        assert echo_line(client, b"fallback\n") == b"fallback\n"


def test_event_loop_is_not_an_option_of_pool_servers() -> None:
    with pytest.raises(TypeError, match="event_loop"):
        sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), SyncEcho, event_loop="asyncio")
    with pytest.raises(TypeError, match="event_loop"):
        sockserve.TCPServer(("127.0.0.1", 0), SyncEcho, event_loop="asyncio")


def test_pool_options_are_not_options_of_async_servers() -> None:
    with pytest.raises(TypeError, match="max_workers"):
        sockserve.AsyncTCPServer(("127.0.0.1", 0), LineEcho, max_workers=4)
