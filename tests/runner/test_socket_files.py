"""The runner's Unix socket files: an instance removes its own file, and only its own.

A restart that overlaps (the new instance started while the old one drains)
often removes the old file and binds the path again. The old instance's stop
must then leave the new file in place, or the new instance serves on a path
nobody can reach.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from helpers.clients import round_trip
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
