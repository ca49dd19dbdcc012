"""Serving clients: one echo, several in a row, several at once, and the bound address."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from conformance_table import TIMEOUT, UNIX, Harness


def test_echo_one_line(harness: Harness) -> None:
    server = harness.server()
    harness.net.serve(server)
    assert harness.round_trip(server, b"hello, world\n") == b"hello, world\n"


def test_sequential_clients(harness: Harness) -> None:
    server = harness.server()
    harness.net.serve(server)
    for n in range(5):
        line = f"client {n}\n".encode()
        assert harness.round_trip(server, line) == line


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.kinds(lambda kind: kind.concurrent)
def test_concurrent_clients(harness: Harness) -> None:
    """Every handler reports to a gate and waits there, so all must run at the same time.

    A server that handled requests one after another would leave all but the
    first client queued, and the gate would time out waiting for them.
    """
    clients_count = 4
    gate = harness.net.closing(socket.create_server(("127.0.0.1", 0)))
    gate.settimeout(TIMEOUT)
    gate_address = gate.getsockname()

    def gated_echo(line: bytes) -> bytes:
        with socket.create_connection(gate_address, timeout=TIMEOUT) as report:
            report.sendall(line)
            report.recv(16)  # b"go", or end of stream if the test gave up
        return line

    server = harness.server(harness.line_handler(gated_echo))
    harness.net.serve(server)
    lines = [f"client {n}\n".encode() for n in range(clients_count)]
    clients = [harness.client(server) for _ in lines]
    for client, line in zip(clients, lines, strict=True):
        client.send(line)

    waiting: list[Any] = []
    for _ in lines:
        conn, _peer = gate.accept()
        harness.net.closing(conn)
        conn.settimeout(TIMEOUT)
        waiting.append(conn)
    assert sorted(_read_line(conn) for conn in waiting) == sorted(lines)

    for conn in waiting:
        conn.sendall(b"go")
    for client, line in zip(clients, lines, strict=True):
        assert client.recv_line() == line


def test_server_address_is_the_bound_address(harness: Harness) -> None:
    requested = harness.address()
    server = harness.net.server(harness.kind.cls(requested, harness.echo_handler()))
    assert server.server_address == server.socket.getsockname()
    if harness.kind.family == UNIX:
        assert server.server_address == requested
        assert os.path.exists(requested)
    else:
        host, port = server.server_address
        assert host == "127.0.0.1"
        assert port != 0
