"""TCP_NODELAY on accepted connections: on in the pool classes, off (as in the stdlib) elsewhere."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

import sockserve
from helpers.clients import connect
from sockserve.testing import serving

WAIT = 10.0


def nodelay_seen_by_handler(server_class: type[sockserve.TCPServer], **options: object) -> int:
    """Serve one connection and return the handler's view of TCP_NODELAY on its socket."""
    seen: list[int] = []
    done = threading.Event()

    class Probe(sockserve.BaseRequestHandler):
        def handle(self) -> None:
            seen.append(self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            done.set()

    server = server_class(("127.0.0.1", 0), Probe, **options)  # type: ignore[arg-type]
    with serving(server), connect(server.server_address):
        assert done.wait(WAIT)
    return seen[0]


def test_pool_servers_disable_nagle_by_default() -> None:
    assert sockserve.ThreadPoolTCPServer.tcp_nodelay is True
    assert nodelay_seen_by_handler(sockserve.ThreadPoolTCPServer) != 0


def test_stdlib_named_servers_keep_the_stdlib_default() -> None:
    assert sockserve.ThreadingTCPServer.tcp_nodelay is False
    assert nodelay_seen_by_handler(sockserve.ThreadingTCPServer) == 0


def test_the_option_turns_it_on_and_off() -> None:
    assert nodelay_seen_by_handler(sockserve.ThreadingTCPServer, tcp_nodelay=True) != 0
    assert nodelay_seen_by_handler(sockserve.ThreadPoolTCPServer, tcp_nodelay=False) == 0


def test_unix_stream_pool_servers_are_left_alone(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    done = threading.Event()

    class Echo(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline())
            done.set()

    server = sockserve.ThreadPoolUnixStreamServer(path, Echo)
    with serving(server), socket.socket(socket.AF_UNIX) as client:
        client.settimeout(WAIT)
        client.connect(path)
        client.sendall(b"unix\n")
        assert client.recv(10) == b"unix\n"
        assert done.wait(WAIT)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_bad_values_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="tcp_nodelay"):
        sockserve.ThreadPoolTCPServer(
            ("127.0.0.1", 0), sockserve.BaseRequestHandler, tcp_nodelay=bad
        )  # type: ignore[arg-type]


def test_datagram_servers_refuse_it() -> None:
    with pytest.raises(ValueError, match="stream servers only"):
        sockserve.UDPServer(("127.0.0.1", 0), sockserve.BaseRequestHandler, tcp_nodelay=True)
