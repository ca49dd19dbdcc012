"""Unix socket files created with a chosen mode, owner and group, never visible without them.

A proxy running as another user (nginx as www-data) must be allowed to
connect: that takes write permission on the socket file. The file is bound
in a private directory, given its mode and owner there, and linked into
place, so the path never names a file with the wrong mode: the tests check
that the path does not exist when the mode and owner are set, and that a
client running as another user connects exactly when the mode lets it.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sockserve
from helpers.clients import recv_line
from helpers.handlers import OneLineEcho, PacketEcho
from helpers.net import TIMEOUT, Net
from helpers.users import NOBODY, exchange_as_nobody, shared_directory
from sockserve.options import option

UNIX_SERVERS = [
    sockserve.UnixStreamServer,
    sockserve.UnixDatagramServer,
    sockserve.ThreadPoolUnixStreamServer,
    sockserve.AsyncUnixStreamServer,
]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")


def _handler(cls: type[Any]) -> Any:
    if cls is sockserve.AsyncUnixStreamServer:

        class AsyncEcho(sockserve.AsyncStreamRequestHandler):
            async def handle(self) -> None:
                self.writer.write(await self.reader.readline())
                await self.writer.drain()

        return AsyncEcho
    return OneLineEcho if cls.socket_type == socket.SOCK_STREAM else PacketEcho


def _round_trip(path: str, kind: int, tmp_path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX, kind) as sock:
        sock.settimeout(TIMEOUT)
        if kind == socket.SOCK_STREAM:
            sock.connect(path)
            sock.sendall(b"unix\n")
            return recv_line(sock)
        sock.bind(str(tmp_path / "client.sock"))
        sock.sendto(b"unix\n", path)
        return sock.recv(4096)


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_the_file_has_the_mode_asked_for_and_is_served(
    net: Net, tmp_path: Path, cls: type[Any]
) -> None:
    path = str(tmp_path / "app.sock")
    server = net.server(cls(path, _handler(cls), socket_mode=0o604))
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o604
    assert server.server_address == path  # not the private name the socket was bound to
    assert sorted(os.listdir(tmp_path)) == ["app.sock"]  # the private directory is gone
    net.serve(server, poll_interval=0.05)
    assert _round_trip(path, server.socket_type, tmp_path) == b"unix\n"
    net.stop(server)
    server.server_close()
    assert not os.path.exists(path)


def test_without_the_options_the_file_is_bound_as_by_the_stdlib(net: Net, tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    server = net.server(sockserve.UnixStreamServer(path, OneLineEcho))
    assert server.socket.getsockname() == path
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777 & ~umask


def test_the_path_appears_only_with_its_mode_set(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: when the mode and owner are set, the path must not exist yet."""
    path = tmp_path / "app.sock"
    seen: list[tuple[str, bool]] = []
    real_chmod, real_chown = os.chmod, os.chown

    def chmod(target: Any, mode: int, **kwargs: Any) -> None:
        seen.append(("chmod", path.exists()))
        real_chmod(target, mode, **kwargs)

    def chown(target: Any, uid: int, gid: int, **kwargs: Any) -> None:
        seen.append(("chown", path.exists()))
        real_chown(target, uid, gid, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(os, "chown", chown)
    net.server(
        sockserve.UnixStreamServer(
            str(path), OneLineEcho, socket_mode=0o660, socket_group=os.getgid()
        )
    )
    assert seen == [("chmod", False), ("chown", False)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o660


def test_a_watcher_never_sees_the_file_with_another_mode(net: Net, tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    modes: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                modes.add(stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(30):
            server = sockserve.UnixStreamServer(path, OneLineEcho, socket_mode=0o600)
            server.server_close()
    finally:
        stop.set()
        watcher.join(TIMEOUT)
    assert modes <= {0o600}


def test_a_second_server_fails_to_bind_and_leaves_no_private_directory(
    net: Net, tmp_path: Path
) -> None:
    path = str(tmp_path / "app.sock")
    first = net.server(sockserve.UnixStreamServer(path, OneLineEcho, socket_mode=0o600))
    inode = os.stat(path).st_ino
    with pytest.raises(OSError, match="Address already in use"):
        sockserve.UnixStreamServer(path, OneLineEcho, socket_mode=0o666)
    assert os.listdir(tmp_path) == ["app.sock"]
    assert os.stat(path).st_ino == inode
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first.server_close()
    assert not os.path.exists(path)


def test_a_path_near_the_length_limit_still_binds(net: Net, tmp_path: Path) -> None:
    """The private name is longer than a short target's: it is bound through /proc/self/fd."""
    room = 100 - len(str(tmp_path)) - len("//a.sock")
    directory = tmp_path / ("d" * room)
    directory.mkdir()
    path = str(directory / "a.sock")
    assert len(path) == 100
    server = net.server(sockserve.UnixStreamServer(path, OneLineEcho, socket_mode=0o640))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    net.serve(server, poll_interval=0.05)
    assert _round_trip(path, socket.SOCK_STREAM, tmp_path) == b"unix\n"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("socket_mode", 0o1777, "an octal mode"),
        ("socket_mode", "660", "an octal mode"),
        ("socket_mode", True, "an octal mode"),
        ("socket_owner", "no-such-user-here", "no user named"),
        ("socket_group", "no-such-group-here", "no group named"),
        ("socket_group", -3, "group name or number"),
    ],
)
def test_bad_values_are_refused_naming_the_option(
    tmp_path: Path, name: str, value: object, problem: str
) -> None:
    with pytest.raises(ValueError, match=f"{name} .*{problem}"):
        sockserve.UnixStreamServer(str(tmp_path / "x.sock"), OneLineEcho, **{name: value})  # type: ignore[arg-type]  # bad on purpose


def test_tcp_servers_do_not_take_the_options() -> None:
    with pytest.raises(TypeError, match=r"socket_mode.*Unix socket servers"):
        sockserve.TCPServer(("127.0.0.1", 0), OneLineEcho, socket_mode=0o600)


def test_the_runner_reads_the_mode_as_octal() -> None:
    kind = option("socket_mode").kind
    assert kind.parse("660") == 0o660
    assert kind.parse("0o600") == 0o600
    assert kind.parse("none") is None
    with pytest.raises(ValueError):
        kind.parse("9")
    assert option("socket_group").kind.parse("33") == 33


# -- another user connecting (root only) ------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    with shared_directory() as directory:
        yield directory


@as_root
def test_owner_and_group_are_set(net: Net, shared_dir: Path) -> None:
    path = str(shared_dir / "app.sock")
    net.server(
        sockserve.UnixStreamServer(path, OneLineEcho, socket_owner="nobody", socket_group="nogroup")
    )
    info = os.stat(path)
    assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)


@as_root
@pytest.mark.parametrize(
    ("mode", "group", "expected"),
    [
        (0o666, None, "connected"),
        (0o660, "nogroup", "connected"),
        (0o660, None, "denied"),
        (0o600, "nogroup", "denied"),
    ],
)
def test_another_user_connects_exactly_when_the_mode_lets_it(
    net: Net, shared_dir: Path, mode: int, group: str | None, expected: str
) -> None:
    path = str(shared_dir / "app.sock")
    net.server(sockserve.UnixStreamServer(path, OneLineEcho, socket_mode=mode, socket_group=group))
    assert exchange_as_nobody(path) == expected
