"""TCP keepalive and TCP_USER_TIMEOUT on accepted connections, for every strategy.

The handler reads the options of its own socket (``getsockopt``), so what is
checked is what the connection really has, whether it inherited the options
from the listener (the first connection gets them set directly, the later
ones copy the listener's) or had them set one by one. Unset, nothing is set:
the kernel's defaults stay.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from tests.runner.targets.tcpopts import AsyncReport, Report

import sockserve
from helpers.clients import connect, receive_until_eof, round_trip
from helpers.handlers import OneLineEcho
from helpers.net import Net
from sockserve.core.connopts import tcp_settings

SERVERS = [
    sockserve.ThreadPoolTCPServer,
    sockserve.ThreadingTCPServer,
    sockserve.ForkingTCPServer,
    sockserve.TCPServer,
    sockserve.AsyncTCPServer,
]
ON = {
    "tcp_keepalive": 30,
    "tcp_keepalive_interval": 5,
    "tcp_keepalive_count": 4,
    "tcp_user_timeout": 12.5,
}


def _serve(net: Net, cls: type[Any], **options: Any) -> Any:
    handler = AsyncReport if cls is sockserve.AsyncTCPServer else Report
    server = net.server(cls(("127.0.0.1", 0), handler, **options))
    net.serve(server, poll_interval=0.05)
    return server


def _reported(server: Any) -> list[int]:
    with connect(server.server_address) as sock:
        return [int(word) for word in receive_until_eof(sock).split()]


@pytest.mark.parametrize("cls", SERVERS)
def test_every_connection_has_the_options(net: Net, cls: type[Any]) -> None:
    server = _serve(net, cls, **ON)
    for _ in range(3):  # the first set directly, then inherited from the listener
        keepalive, idle, interval, count, user_timeout, _nodelay = _reported(server)
        assert (keepalive, idle, interval, count, user_timeout) == (1, 30, 5, 4, 12500)
    assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


@pytest.mark.parametrize("cls", SERVERS)
def test_unset_they_are_the_kernels_and_the_listener_is_untouched(net: Net, cls: type[Any]) -> None:
    server = _serve(net, cls)
    plain = socket.socket()
    defaults = [
        plain.getsockopt(socket.IPPROTO_TCP, name)
        for name in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)
    ]
    plain.close()
    for _ in range(2):
        keepalive, idle, interval, count, user_timeout, _nodelay = _reported(server)
        assert (keepalive, user_timeout) == (0, 0)
        assert [idle, interval, count] == defaults
    assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_keepalive_true_keeps_the_kernels_times(net: Net) -> None:
    server = _serve(net, sockserve.ThreadPoolTCPServer, tcp_keepalive=True)
    keepalive, _idle, _interval, _count, user_timeout, _nodelay = _reported(server)
    assert (keepalive, user_timeout) == (1, 0)
    assert tcp_settings(True, None, None, None) == ((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),)


def test_user_timeout_alone(net: Net) -> None:
    server = _serve(net, sockserve.ThreadPoolTCPServer, tcp_user_timeout=0.0004)
    keepalive, _idle, _interval, _count, user_timeout, _nodelay = _reported(server)
    assert (keepalive, user_timeout) == (0, 1)  # rounded up to the kernel's millisecond


def test_turning_keepalive_off_resets_the_listener(net: Net) -> None:
    server = _serve(net, sockserve.ThreadPoolTCPServer, tcp_keepalive=10, tcp_user_timeout=3)
    assert _reported(server)[:1] == [1]
    assert _reported(server)[:1] == [1]
    server.tcp_keepalive = None
    server.tcp_user_timeout = None
    server.tcp_nodelay = True  # something else still set: the options are applied
    for _ in range(2):
        report = _reported(server)
        assert (report[0], report[4]) == (0, 0)


def test_unix_servers_serve_with_them_set(net: Net, tmp_path: Any) -> None:
    """No TCP options on a Unix socket: setting one there would fail every connection."""
    path = str(tmp_path / "s.sock")
    server = net.server(
        sockserve.ThreadPoolUnixStreamServer(
            path, OneLineEcho, tcp_keepalive=30, tcp_user_timeout=5
        )
    )
    net.serve(server, poll_interval=0.05)
    for _ in range(2):
        assert round_trip(path, b"unix\n") == b"unix\n"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"tcp_keepalive": 0}, "tcp_keepalive must be true, false, or the seconds"),
        ({"tcp_keepalive": 40000}, "tcp_keepalive must be"),
        ({"tcp_keepalive": "yes"}, "tcp_keepalive must be"),
        ({"tcp_keepalive_interval": 5}, "tcp_keepalive_interval needs tcp_keepalive"),
        ({"tcp_keepalive": False, "tcp_keepalive_count": 3}, "tcp_keepalive_count needs"),
        ({"tcp_keepalive": True, "tcp_keepalive_count": 128}, "from 1 to 127"),
        ({"tcp_user_timeout": 0}, "tcp_user_timeout must be"),
        ({"tcp_user_timeout": 3e6}, "at most 2.14748e\\+06"),
    ],
)
def test_bad_values_are_refused(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Report, bind_and_activate=False, **options)


def test_datagram_servers_refuse_them() -> None:
    with pytest.raises(ValueError, match="stream servers only"):
        sockserve.UDPServer(("127.0.0.1", 0), Report, bind_and_activate=False, tcp_keepalive=30)
