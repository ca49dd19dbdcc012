"""AsyncTCPServer / AsyncUnixStreamServer serve: lines, large payloads, the access log."""

from __future__ import annotations

import logging
import os
import re
import socket

import pytest

import sockserve
from helpers.clients import Background, closed_by_peer, connect, recv_line, short_tempdir
from sockserve.testing import serving

from ._support import LOOPS, WAIT, LineEcho, Loop, echo_line, tcp_server


@pytest.mark.parametrize("loop", LOOPS)
def test_tcp_echo_on_each_event_loop(loop: Loop) -> None:
    server = tcp_server(LineEcho, event_loop=loop)
    assert server.event_loop_kind == loop
    with serving(server):
        with connect(server.server_address) as client:
            for i in range(10):
                assert echo_line(client, b"line %d\r\n" % i) == b"line %d\r\n" % i
            client.shutdown(socket.SHUT_WR)
            assert closed_by_peer(client) == "eof"  # the handler ends at EOF, FIN follows
        assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, WAIT)
        stats = server.stats()
        assert stats.accepted == 1
        assert stats.handler_errors == 0
        assert stats.peer_errors == 0
        assert stats.disconnects == 0


def test_auto_picks_uvloop_when_it_is_installed() -> None:
    server = tcp_server(LineEcho)
    assert server.event_loop == "auto"
    assert server.event_loop_kind == "uvloop"
    with serving(server), connect(server.server_address) as client:
        assert echo_line(client, b"auto\n") == b"auto\n"


def test_async_server_defaults() -> None:
    server = tcp_server(LineEcho)
    try:
        assert server.max_connections == 10000
        assert server.idle_timeout == 300
        assert server.max_line == 65536
        assert server.tcp_nodelay is True
    finally:
        server.server_close()


def test_accepted_tcp_connections_have_nodelay() -> None:
    sockets: list[bool] = []

    class Probe(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            nodelay = self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            sockets.append(bool(nodelay))
            self.writer.write(b"ok\n")

    server = tcp_server(Probe)
    with serving(server), connect(server.server_address) as client:
        assert recv_line(client) == b"ok\n"
    assert sockets == [True]


@pytest.mark.parametrize("loop", LOOPS)
def test_unix_stream_echo(loop: Loop) -> None:
    with short_tempdir() as tmp:
        path = os.path.join(tmp, "s")
        server = sockserve.AsyncUnixStreamServer(path, LineEcho, event_loop=loop)
        assert server.event_loop_kind == loop
        with serving(server):
            assert os.path.exists(path)
            for round_ in range(3):
                with connect(path, family=socket.AF_UNIX) as client:
                    for i in range(5):
                        line = b"unix %d %d\n" % (round_, i)
                        assert echo_line(client, line) == line
            assert server.wait_for(lambda st: st.completed == 3 and st.active == 0, WAIT)
            assert server.stats().handler_errors == 0
        assert not os.path.exists(path)  # server_close removed the socket file


class ChunkEcho(sockserve.AsyncStreamRequestHandler):
    """Echoes bytes as they come, in reads of at most 64 KiB, until EOF."""

    async def handle(self) -> None:
        while chunk := await self.reader.read(65536):
            self.writer.write(chunk)
            await self.writer.drain()


def _receive_all(client: socket.socket) -> bytes:
    received = bytearray()
    while chunk := client.recv(1 << 16):
        received += chunk
    return bytes(received)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_payload_comes_back_whole(loop: Loop) -> None:
    payload = os.urandom(1 << 20)
    server = tcp_server(ChunkEcho, event_loop=loop)
    with serving(server), connect(server.server_address) as client:
        # Send from another thread while this one reads: the echo comes back as
        # it is sent, and neither side may wait for the other's buffers to empty.
        def send() -> None:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)

        sender = Background(send, name="test-sender")
        received = _receive_all(client)
        sender.join(WAIT)
        assert len(received) == len(payload)
        assert received == payload
        assert server.wait_for(lambda st: st.completed == 1, WAIT)
        assert server.stats().handler_errors == 0


_ACCESS_LINE = re.compile(r"^127\.0\.0\.1:(\d+) ok (\d+\.\d{3})s rx=(\d+) tx=(\d+)$")


@pytest.mark.parametrize("loop", LOOPS)
def test_access_log_has_one_line_per_connection(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    server = tcp_server(LineEcho, event_loop=loop, access_log=True)
    ports = []
    with caplog.at_level(logging.INFO, logger="sockserve.access"), serving(server):
        for payload in (b"hello\n", b"a somewhat longer line\n"):
            with connect(server.server_address) as client:
                ports.append(client.getsockname()[1])
                assert echo_line(client, payload) == payload
                client.shutdown(socket.SHUT_WR)
                assert closed_by_peer(client) == "eof"
        assert server.wait_for(lambda st: st.completed == 2 and st.active == 0, WAIT)
    lines = [r for r in caplog.records if r.name == "sockserve.access"]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    for record, port, size in zip(lines, ports, (6, 23), strict=True):
        assert record.levelno == logging.INFO
        match = _ACCESS_LINE.match(record.getMessage())
        assert match is not None, record.getMessage()
        assert int(match.group(1)) == port
        assert float(match.group(2)) < WAIT
        assert int(match.group(3)) == size  # rx: what the client sent
        assert int(match.group(4)) == size  # tx: the echo


def test_access_log_for_unix_connections_has_no_byte_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with short_tempdir() as tmp:
        path = os.path.join(tmp, "s")
        server = sockserve.AsyncUnixStreamServer(path, LineEcho, access_log=True)
        with caplog.at_level(logging.INFO, logger="sockserve.access"), serving(server):
            with connect(path, family=socket.AF_UNIX) as client:
                assert echo_line(client, b"hello\n") == b"hello\n"
            assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, WAIT)
    lines = [r.getMessage() for r in caplog.records if r.name == "sockserve.access"]
    assert len(lines) == 1, lines
    assert re.match(r"^unix:\S+ ok \d+\.\d{3}s rx=- tx=-$", lines[0]), lines[0]


def test_the_handler_sees_the_request_client_address_and_server() -> None:
    seen: list[tuple[object, ...]] = []

    class Introspect(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            request = self.request
            seen.append((request.getpeername(), self.client_address, self.server, self.timed_out))
            try:
                request.recv(1)  # the transport owns the socket: not available
            except AttributeError as exc:
                seen.append(("recv", str(exc)))
            self.writer.write(b"ok\n")

    server = tcp_server(Introspect)
    with serving(server), connect(server.server_address) as client:
        assert recv_line(client) == b"ok\n"
        assert closed_by_peer(client) == "eof"
        ours = client.getsockname()
    assert len(seen) == 2
    peer, address, owner, timed_out = seen[0]
    assert peer == address == ours
    assert seen[1][0] == "recv" and "self.reader" in seen[1][1]
    assert owner is server
    assert timed_out is False


def test_access_log_names_the_outcome_of_a_timed_out_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = tcp_server(LineEcho, access_log=True, idle_timeout=0.2, max_connections=1)
    with caplog.at_level(logging.INFO, logger="sockserve.access"), serving(server):
        with connect(server.server_address) as client:
            assert server.wait_for(lambda st: st.active == 1, WAIT)
            with connect(server.server_address) as refused:
                assert closed_by_peer(refused) in ("eof", "reset")
            assert closed_by_peer(client) in ("eof", "reset")
        assert server.wait_for(lambda st: st.timed_out == 1 and st.active == 0, WAIT)
    lines = [r.getMessage() for r in caplog.records if r.name == "sockserve.access"]
    assert len(lines) == 2, lines
    assert " refused:max_connections " in lines[0]
    assert " timeout " in lines[1]
