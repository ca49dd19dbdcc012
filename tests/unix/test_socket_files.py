"""Unix socket files: a server removes its own, and only its own.

The stdlib leaves the file behind, so the next start fails with "Address
already in use". sockserve removes it at server_close, but not when the path
now names someone else's file, nor from a forked child, nor when its own bind
failed.

(That server_close removes the file, for every Unix server class, is in the
conformance suite.)
"""

from __future__ import annotations

import os
import socket
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

import sockserve
from helpers.clients import recv_line
from helpers.handlers import OneLineEcho, PacketEcho
from helpers.net import TIMEOUT, Net
from helpers.processes import wait_child_exit

UNIX_SERVERS = [sockserve.UnixStreamServer, sockserve.UnixDatagramServer]


def _unix_server(net: Net, cls: type[Any], path: Path | str) -> Any:
    handler = OneLineEcho if cls.socket_type == socket.SOCK_STREAM else PacketEcho
    return net.server(cls(str(path), handler))


def _unix_round_trip(server: Any, tmp_path: Path) -> bytes:
    """One request served by ``handle_request``; returns the reply."""
    if server.socket_type == socket.SOCK_STREAM:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(server.server_address)
            sock.sendall(b"unix\n")
            server.handle_request()
            return recv_line(sock)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind(str(tmp_path / f"client-{uuid.uuid4().hex[:8]}.sock"))
        sock.sendto(b"unix\n", server.server_address)
        server.handle_request()
        return sock.recv(4096)


@pytest.mark.parametrize("replacement", ["socket", "regular file"])
@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_server_close_keeps_a_file_that_replaced_its_own(
    net: Net, tmp_path: Path, cls: type[Any], replacement: str
) -> None:
    path = tmp_path / "server.sock"
    server = _unix_server(net, cls, path)
    path.unlink()
    if replacement == "socket":
        other = net.closing(socket.socket(socket.AF_UNIX, server.socket_type))
        other.bind(str(path))
    else:
        path.write_text("not a socket of the server")
    inode = path.stat().st_ino

    server.server_close()

    assert path.exists()
    assert path.stat().st_ino == inode


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_a_server_that_fails_to_bind_keeps_the_file_of_the_one_that_did(
    net: Net, tmp_path: Path, cls: type[Any]
) -> None:
    path = tmp_path / "server.sock"
    first = _unix_server(net, cls, path)
    with pytest.raises(OSError, match="Address already in use"):
        _unix_server(net, cls, path)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert _unix_round_trip(first, tmp_path) == b"unix\n"


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_a_forked_child_closing_the_server_keeps_the_parents_file(
    net: Net, tmp_path: Path, cls: type[Any]
) -> None:
    path = tmp_path / "server.sock"
    server = _unix_server(net, cls, path)
    pid = os.fork()
    if pid == 0:  # the child: close its copy of the server, never return into pytest
        code = 1
        try:
            server.server_close()
            code = 0
        finally:
            os._exit(code)
    assert wait_child_exit(pid) == 0
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert _unix_round_trip(server, tmp_path) == b"unix\n"  # still the parent's, still served
    server.server_close()
    assert not path.exists()


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_an_abstract_socket_has_no_file_and_closes_cleanly(net: Net, cls: type[Any]) -> None:
    name = f"\0sockserve-test-{uuid.uuid4().hex}"
    server = _unix_server(net, cls, name)
    assert server.server_address == name.encode()  # Linux reports abstract names as bytes
    server.server_close()
    assert server.socket.fileno() == -1
