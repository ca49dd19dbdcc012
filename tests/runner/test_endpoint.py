"""The master's HTTP responder, driven by a select loop here: answers, HEAD, limits, expiry."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from helpers.net import TIMEOUT
from sockserve.runner.endpoint import MAX_CLIENTS, Endpoint, Reply


def answer(path: str) -> Reply:
    if path == "/hello":
        return 200, "text/plain", b"hello\n"
    return 404, "text/plain", b"no\n"


def drive(endpoint: Endpoint, client: Callable[[], Any]) -> Any:
    """Run ``client`` in a thread while this thread plays the master's loop; its result."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(client()))
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while thread.is_alive() and time.monotonic() < deadline:
        readable, writable, _ = select.select(endpoint.readers(), endpoint.writers(), [], 0.05)
        for fd in writable:
            endpoint.writable(fd)
        for fd in readable:
            endpoint.readable(fd, answer)
    thread.join(TIMEOUT)
    assert result, "the client did not finish"
    return result[0]


def request(port: int, method: str, path: str) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Length")
    finally:
        conn.close()


def test_get_head_and_unknown_paths() -> None:
    endpoint = Endpoint(socket.create_server(("127.0.0.1", 0)))
    assert endpoint.sock is not None
    port = endpoint.sock.getsockname()[1]
    try:
        assert drive(endpoint, lambda: request(port, "GET", "/hello?x=1")) == (200, b"hello\n", "6")
        assert drive(endpoint, lambda: request(port, "HEAD", "/hello")) == (200, b"", "6")
        assert drive(endpoint, lambda: request(port, "GET", "/other"))[0] == 404
        assert drive(endpoint, lambda: request(port, "DELETE", "/hello"))[0] == 405
    finally:
        endpoint.close()
    assert endpoint.readers() == [] and endpoint.writers() == []


def test_silent_clients_expire_and_the_oldest_gives_way() -> None:
    endpoint = Endpoint(socket.create_server(("127.0.0.1", 0)))
    assert endpoint.sock is not None
    address = endpoint.sock.getsockname()
    clients = [socket.create_connection(address, timeout=TIMEOUT) for _ in range(MAX_CLIENTS + 1)]
    try:
        deadline = time.monotonic() + TIMEOUT
        # One more than the limit: accepting the last drops the oldest (closes it).
        while not select.select([clients[0]], [], [], 0)[0] and time.monotonic() < deadline:
            for fd in select.select(endpoint.readers(), [], [], 0.05)[0]:
                endpoint.readable(fd, answer)
        assert clients[0].recv(1) == b""
        assert len(endpoint.readers()) == MAX_CLIENTS + 1  # the listener and 16 clients
        endpoint.expire(time.monotonic() + 3600)
        assert len(endpoint.readers()) == 1  # only the listener: every silent client expired
        assert clients[1].recv(1) == b""
    finally:
        for client in clients:
            client.close()
        endpoint.close()
