"""The runner's Unix socket files: an instance removes its own file, and only its own.

A restart that overlaps (the new instance started while the old one drains)
often removes the old file and binds the path again. The old instance's stop
must then leave the new file in place, or the new instance serves on a path
nobody can reach.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import round_trip
from helpers.processes import run, sockserve_argv
from helpers.users import NOBODY, exchange_as_nobody, shared_directory
from sockserve.core.addresses import parse_bind_spec
from sockserve.exitcodes import ExitCode
from sockserve.runner.listeners import close_listeners, open_listeners


def test_stopping_an_old_instance_keeps_the_new_instances_file(
    sockserve: Any, tmp_path: Path
) -> None:
    path = tmp_path / "app.sock"
    old = sockserve("echo", "--bind", f"unix:{path}", "--workers", "1")
    old.listening()
    path.unlink()  # what a deployment script does before starting the new instance
    new = sockserve("echo", "--bind", f"unix:{path}")
    new.listening()
    inode = path.stat().st_ino

    assert old.stop() == ExitCode.OK

    assert path.stat().st_ino == inode  # still the new instance's file
    assert round_trip(str(path), b"new\n") == b"new\n"
    assert new.stop() == ExitCode.OK
    assert not path.exists()  # and the new instance removes its own


def test_close_listeners_keeps_a_file_bound_again_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    [listener] = open_listeners([parse_bind_spec(f"unix:{path}")])
    path.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        inode = path.stat().st_ino
        close_listeners([listener])
        assert path.stat().st_ino == inode
    [listener] = open_listeners([parse_bind_spec(f"unix:{path}")])  # the stale file goes
    close_listeners([listener])
    assert not path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="a client as another user needs root")
def test_nginx_as_another_user_connects_to_a_socket_created_as_root(sockserve: Any) -> None:
    """docs/deploy.md's example: --socket-mode 660 --socket-group (www-data there, nogroup here)."""
    with shared_directory() as directory:
        path = directory / "app.sock"
        server = sockserve(
            "echo", "--bind", f"unix:{path}", "--workers", "1",
            "--socket-mode", "660", "--socket-group", "nogroup",
        )  # fmt: skip
        assert server.listening() == [f"unix:{path}"]
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert (info.st_uid, info.st_gid) == (0, NOBODY)
        assert sorted(os.listdir(directory)) == ["app.sock"]
        assert exchange_as_nobody(str(path), b"from nginx\n") == "echoed"
        assert server.stop() == ExitCode.OK
        assert not path.exists()


def test_socket_file_settings_without_a_unix_listener_are_refused() -> None:
    result = run(sockserve_argv("echo", "--bind", "127.0.0.1:0", "--socket-mode", "660"))
    assert result.returncode == ExitCode.USAGE
    assert "socket_mode (from --socket-mode) applies to the socket files of unix:" in result.stderr


def test_a_bad_mode_is_refused_naming_the_flag() -> None:
    result = run(sockserve_argv("echo", "--bind", "unix:/nonexistent/x", "--socket-mode", "rw"))
    assert result.returncode == ExitCode.USAGE
    assert "socket_mode = 'rw' (from --socket-mode): must be an octal mode" in result.stderr
