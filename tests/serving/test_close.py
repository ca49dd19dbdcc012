"""server_close() with datagram requests still being handled: their replies still go out."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import sockserve
from helpers.fakes import records_of
from helpers.net import TIMEOUT, Net

LOCALHOST = ("127.0.0.1", 0)


class CloseSpy:
    """Stands in for a datagram server's socket; records when it is closed."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.mark.parametrize(
    "cls",
    [
        sockserve.ThreadingUDPServer,
        sockserve.ThreadingUnixDatagramServer,
        sockserve.ThreadPoolUDPServer,
    ],
)
def test_server_close_lets_datagram_handlers_in_flight_reply(
    net: Net, tmp_path: Path, server_log: pytest.LogCaptureFixture, cls: type[Any]
) -> None:
    """``block_on_close`` waits for request threads, so their replies must still go out.

    Datagram handlers reply through the server's own socket. If ``server_close``
    closes it before waiting for them, the reply fails with EBADF and is lost.
    """
    spy: dict[str, CloseSpy] = {}

    class RepliesLate(sockserve.DatagramRequestHandler):
        def handle(self) -> None:
            # Give a server_close that closes the socket first the chance to do so.
            spy["socket"].closed.wait(0.3)
            self.wfile.write(self.rfile.read())

    unix = cls.address_family == socket.AF_UNIX
    address = str(tmp_path / "server.sock") if unix else LOCALHOST
    server = net.server(cls(address, RepliesLate))
    spy["socket"] = server.socket = CloseSpy(server.socket)
    client = net.closing(socket.socket(cls.address_family, socket.SOCK_DGRAM))
    client.settimeout(TIMEOUT)
    client.bind(str(tmp_path / "client.sock") if unix else LOCALHOST)
    client.sendto(b"in flight\n", server.server_address)

    server.handle_request()
    server.server_close()

    assert [r.getMessage() for r in records_of(server_log, "sockserve.server")] == []
    assert client.recv(4096) == b"in flight\n"
