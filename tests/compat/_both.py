"""Helpers that run the same code on the stdlib's ``socketserver`` and on sockserve.

A test takes the module as an argument (``mod``) and builds its servers and
handlers from it, so one body observes both; the helpers here only touch what
the two have in common (the stdlib API).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import sockserve
from helpers.net import TIMEOUT

MODULES = [socketserver, sockserve]
MODULE_IDS = ["stdlib", "sockserve"]
LOCALHOST = ("127.0.0.1", 0)
#: Short, so that the stdlib's polling shutdown() does not slow the suite down.
POLL = 0.05


def echo_handler(mod: ModuleType) -> type[Any]:
    """A line echo handler built on ``mod.StreamRequestHandler``."""

    class Echo(mod.StreamRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline())

    return Echo


def datagram_echo_handler(mod: ModuleType) -> type[Any]:
    """A datagram echo handler built on ``mod.DatagramRequestHandler``."""

    class Echo(mod.DatagramRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            self.wfile.write(self.rfile.read())

    return Echo


def round_trip(address: Any, line: bytes = b"ping\n") -> bytes:
    """Send one line over a new TCP connection; return the reply (up to EOF)."""
    with socket.create_connection(address, timeout=TIMEOUT) as client:
        client.sendall(line)
        reply = b""
        while chunk := client.recv(4096):
            reply += chunk
        return reply


def datagram_round_trip(address: Any, data: bytes = b"ping") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(data, address)
        return client.recv(4096)


def shutdown_within(server: Any, timeout: float = TIMEOUT) -> bool:
    """Call ``server.shutdown()`` with a deadline (it blocks forever if nothing serves)."""
    thread = threading.Thread(target=server.shutdown, name="test-shutdown", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


@contextmanager
def serving(server: Any, poll_interval: float = POLL) -> Iterator[list[BaseException]]:
    """``serve_forever`` in a thread for the block; yields what it raised (if anything).

    On exit: ``shutdown()`` (bounded) and a join; the server is left open.
    """
    raised: list[BaseException] = []

    def run() -> None:
        try:
            server.serve_forever(poll_interval=poll_interval)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, name="test-serve", daemon=True)
    thread.start()
    try:
        yield raised
    finally:
        stopped = shutdown_within(server)
        thread.join(TIMEOUT)
        assert stopped and not thread.is_alive(), "serve_forever did not stop"
