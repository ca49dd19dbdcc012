"""The listening socket: the backlog passed to listen(), a burst of clients, bind errors.

The stdlib listens with a backlog of 5, so a burst of clients meets refused
or retried connections; sockserve's default is ``socket.SOMAXCONN``, and a
subclass's own ``request_queue_size`` still wins.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any

import pytest

import sockserve
from helpers.clients import connect, exchange, recv_line, run_clients
from helpers.handlers import OneLineEcho
from helpers.net import TIMEOUT, Net

LOCALHOST = ("127.0.0.1", 0)


class ListenSpy:
    """Stands in for a server's socket and records the backlog passed to listen()."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.backlogs: list[int] = []

    def listen(self, backlog: int) -> None:
        self.backlogs.append(backlog)
        self._sock.listen(backlog)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _activated_backlogs(net: Net, cls: type[Any]) -> list[int]:
    server = net.server(cls(LOCALHOST, OneLineEcho, bind_and_activate=False))
    server.server_bind()
    spy = server.socket = ListenSpy(server.socket)
    server.server_activate()
    client = net.tcp_client(server.server_address)  # listening for real
    client.sendall(b"listening\n")
    server.handle_request()
    assert recv_line(client) == b"listening\n"
    return spy.backlogs


def test_the_default_backlog_is_somaxconn(net: Net) -> None:
    assert sockserve.TCPServer.request_queue_size == socket.SOMAXCONN
    assert sockserve.ThreadingTCPServer.request_queue_size == socket.SOMAXCONN
    assert _activated_backlogs(net, sockserve.TCPServer) == [socket.SOMAXCONN]


def test_a_subclass_backlog_is_still_used(net: Net) -> None:
    class Small(sockserve.TCPServer):
        request_queue_size = 7

    assert _activated_backlogs(net, Small) == [7]


def test_a_hundred_simultaneous_clients_are_all_served(net: Net) -> None:
    clients = 100
    server = net.server(sockserve.ThreadingTCPServer(LOCALHOST, OneLineEcho))
    net.serve(server)
    barrier = threading.Barrier(clients, timeout=TIMEOUT)

    def client(n: int) -> bytes:
        barrier.wait()  # every client connects at the same moment
        with connect(server.server_address) as sock:
            return exchange(sock, f"client {n}\n".encode())

    replies = run_clients(clients, client, timeout=3 * TIMEOUT)
    assert replies == [f"client {n}\n".encode() for n in range(clients)]


def test_a_bind_error_names_the_address(net: Net) -> None:
    taken = net.server(sockserve.TCPServer(LOCALHOST, OneLineEcho))
    host, port = taken.server_address
    with pytest.raises(OSError) as caught:
        sockserve.TCPServer((host, port), OneLineEcho)
    assert caught.value.errno == errno.EADDRINUSE
    assert any(f"{host}:{port}" in note for note in getattr(caught.value, "__notes__", []))
