"""The classic services, each handler served in-process over TCP, UDP or a Unix socket."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import sockserve
from helpers.clients import connect, receive_until_eof, send_then_shut_write
from helpers.net import TIMEOUT
from sockserve.services import SERVICES
from sockserve.services.chargen import CHARACTERS, CYCLE, LINE_LENGTH
from sockserve.services.daytime import DAYTIME_FORMAT, daytime_line
from sockserve.testing import serving

LOOPBACK = ("127.0.0.1", 0)
MiB = 1024 * 1024


@contextmanager
def tcp_service(name: str, asynchronous: bool = False) -> Iterator[socket.socket]:
    """Serve the stream handler of ``name`` (or its async one) on loopback; yield a client."""
    service = SERVICES[name]
    server: sockserve.TCPServer = (
        sockserve.AsyncTCPServer(LOOPBACK, service.async_stream)
        if asynchronous
        else sockserve.ThreadingTCPServer(LOOPBACK, service.stream)
    )
    with serving(server), connect(server.server_address) as client:
        yield client


@contextmanager
def udp_service(name: str) -> Iterator[tuple[socket.socket, tuple[str, int]]]:
    """Serve the datagram handler of ``name`` on loopback; yield a client and the address."""
    server = sockserve.ThreadingUDPServer(LOOPBACK, SERVICES[name].datagram)
    with serving(server), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        yield client, server.server_address


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


# -- the registry --------------------------------------------------------------


def test_registry_has_the_four_classic_services() -> None:
    assert set(SERVICES) == {"echo", "discard", "daytime", "chargen"}
    for name, (stream, datagram, description, async_stream) in SERVICES.items():
        assert issubclass(stream, sockserve.BaseRequestHandler), name
        assert issubclass(datagram, sockserve.BaseRequestHandler), name
        assert issubclass(async_stream, sockserve.AsyncStreamRequestHandler), name
        assert "RFC 8" in description


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        SERVICES["echo"] = SERVICES["discard"]  # type: ignore[index]


# -- echo (RFC 862) ----------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "async"])
def test_tcp_echo_returns_a_mebibyte_intact(asynchronous: bool) -> None:
    payload = os.urandom(MiB)
    with tcp_service("echo", asynchronous) as client:
        sender = send_then_shut_write(client, payload)
        echoed = receive_until_eof(client)  # the server closes after our EOF
        sender.join(TIMEOUT)
    assert len(echoed) == len(payload)
    assert echoed == payload


def test_unix_stream_echo(tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    server = sockserve.ThreadingUnixStreamServer(path, SERVICES["echo"].stream)
    with serving(server), connect(path) as client:
        client.sendall(b"over a Unix socket\n")
        client.shutdown(socket.SHUT_WR)
        assert receive_until_eof(client) == b"over a Unix socket\n"


@pytest.mark.parametrize("payload", [b"ping", b"", bytes(range(256)) * 4])
def test_udp_echo_returns_the_same_datagram(payload: bytes) -> None:
    with udp_service("echo") as (client, address):
        client.sendto(payload, address)
        reply, sender = client.recvfrom(65536)
    assert reply == payload
    assert sender == address


# -- discard (RFC 863) ---------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "async"])
def test_tcp_discard_reads_everything_and_sends_nothing(asynchronous: bool) -> None:
    with tcp_service("discard", asynchronous) as client:
        sender = send_then_shut_write(client, os.urandom(MiB))
        # EOF without a byte: the server read to the end, then closed.
        assert client.recv(1024) == b""
        sender.join(TIMEOUT)


def test_udp_discard_sends_no_datagram_at_all() -> None:
    # A non-threading server handled in this thread: when handle_request
    # returns, any reply would already be queued at the client.
    server = sockserve.UDPServer(LOOPBACK, SERVICES["discard"].datagram)
    with server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"into the void", server.server_address)
        server.timeout = TIMEOUT
        server.handle_request()
        client.settimeout(0.2)  # short: we expect nothing, not even an empty datagram
        with pytest.raises(TimeoutError):
            client.recvfrom(1024)


# -- daytime (RFC 867) -----------------------------------------------------------------


def test_daytime_line_format() -> None:
    moment = datetime(2026, 11, 26, 23, 40, 0, tzinfo=UTC)
    assert daytime_line(moment) == b"Thursday, November 26, 2026 23:40:00-UTC\r\n"
    # Single-digit days are not padded, as in RFC 867's example.
    assert daytime_line(datetime(1982, 2, 1, 9, 5, 7, tzinfo=UTC)).startswith(
        b"Monday, February 1, 1982 09:05:07-UTC"
    )


def test_daytime_line_is_in_utc() -> None:
    in_paris = datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert daytime_line(in_paris) == b"Wednesday, December 31, 2025 23:30:00-UTC\r\n"


def assert_is_now(line: bytes) -> None:
    assert line.endswith(b"\r\n")
    stamp = datetime.strptime(line[:-2].decode("ascii"), DAYTIME_FORMAT).replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=30)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "async"])
def test_tcp_daytime_sends_one_line_then_closes(asynchronous: bool) -> None:
    with tcp_service("daytime", asynchronous) as client:
        assert_is_now(receive_until_eof(client))


def test_udp_daytime_answers_any_datagram() -> None:
    with udp_service("daytime") as (client, address):
        client.sendto(b"what time is it?", address)
        assert_is_now(client.recv(1024))


# -- chargen (RFC 864) ---------------------------------------------------------------


def test_cycle_is_95_rotating_lines() -> None:
    assert len(CHARACTERS) == 95
    assert sorted(CHARACTERS) == list(range(32, 127))  # every printable character, once
    assert len(CYCLE) == 95 * (LINE_LENGTH + 2)


def assert_chargen_lines(data: bytes) -> None:
    """Whole lines of the classic pattern, each one character further than the last."""
    lines = data.split(b"\r\n")
    assert lines.pop() == b""  # ends with CRLF
    ring = CHARACTERS * 2
    start = CHARACTERS.index(lines[0][:1])
    for number, line in enumerate(lines):
        offset = (start + number) % len(CHARACTERS)
        assert line == ring[offset : offset + LINE_LENGTH], f"line {number}"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "async"])
def test_tcp_chargen_streams_rotating_lines_until_the_client_closes(
    caplog: pytest.LogCaptureFixture, asynchronous: bool
) -> None:
    line_count = 2000  # more than one sendall's worth, to cross a block boundary
    with (
        caplog.at_level(logging.INFO, logger="sockserve"),
        tcp_service("chargen", asynchronous) as client,
    ):
        data = receive_exactly(client, line_count * (LINE_LENGTH + 2))
    # Leaving the block closed the client first, then stopped (and joined) the server.
    assert data.startswith(b'!"#$%&')  # RFC 864's first line
    assert_chargen_lines(data)
    # The client hanging up is how chargen ends: nothing worth a log line.
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_udp_chargen_replies_with_up_to_512_characters() -> None:
    lengths = set()
    with udp_service("chargen") as (client, address):
        for _ in range(30):
            client.sendto(b"", address)
            reply = client.recv(65536)
            assert len(reply) <= 512
            assert reply == CYCLE[: len(reply)]
            end_of_lines = reply.rfind(b"\r\n")
            if end_of_lines >= 0:
                assert_chargen_lines(reply[: end_of_lines + 2])
            lengths.add(len(reply))
    assert len(lengths) > 1  # random lengths (all 30 equal: odds about 1 in 10**78)
