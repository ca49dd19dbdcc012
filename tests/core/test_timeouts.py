"""Kernel-kept idle timeouts: they must look like Python's own socket timeouts to handlers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from helpers.clients import connect
from sockserve.core.timeouts import IdleTimeoutSocket, apply_idle_timeout

WAIT = 5.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on loopback: (server side, client side)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = connect(listener.getsockname(), timeout=WAIT)
        server, _ = listener.accept()
    with server, client:
        yield server, client


def test_a_plain_socket_keeps_blocking_mode_and_switches_class(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, _client = pair
    apply_idle_timeout(server, 0.2)
    assert type(server) is IdleTimeoutSocket
    assert server.gettimeout() is None  # no poll() before each call
    assert isinstance(server, socket.socket)


@pytest.mark.parametrize("method", ["recv", "recv_into", "recvfrom", "rfile"])
def test_silence_raises_timeout_error(
    pair: tuple[socket.socket, socket.socket], method: str
) -> None:
    server, client = pair
    apply_idle_timeout(server, 0.2)
    client.sendall(b"x")
    assert server.recv(1) == b"x"  # data within the timeout is read normally
    with pytest.raises(TimeoutError):
        if method == "recv":
            server.recv(10)
        elif method == "recv_into":
            server.recv_into(bytearray(10))
        elif method == "recvfrom":
            server.recvfrom(10)
        else:
            with server.makefile("rb") as rfile:
                rfile.readline()


def test_a_peer_that_stops_reading_makes_sendall_time_out(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, _client = pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    apply_idle_timeout(server, 0.2)
    with pytest.raises(TimeoutError):
        server.sendall(b"\0" * (64 * 1024 * 1024))  # far more than both buffers hold


def test_non_blocking_mode_still_reports_would_block(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, _client = pair
    apply_idle_timeout(server, 5.0)
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.recv(10)


def test_a_handler_timeout_takes_over(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _client = pair
    apply_idle_timeout(server, 60.0)
    server.settimeout(0.1)  # what StreamRequestHandler.timeout does
    with pytest.raises(TimeoutError):
        server.recv(10)


def test_a_socket_already_in_timeout_mode_uses_python_timeouts(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, _client = pair
    server.settimeout(30.0)
    apply_idle_timeout(server, 0.1)
    assert type(server) is socket.socket
    assert server.gettimeout() == pytest.approx(0.1)
