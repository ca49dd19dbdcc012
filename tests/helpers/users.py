"""Acting as another user: a client that runs as ``nobody`` (the tests that need it run as root).

The suite's Python may live where ``nobody`` cannot execute it (under
``/root``), so the client is a forked child that drops its privileges, not a
new program.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from helpers.net import TIMEOUT
from helpers.processes import wait_child_exit

__all__ = ["NOBODY", "exchange_as_nobody", "shared_directory"]

#: uid of nobody and gid of nogroup on Debian and most Linux systems.
NOBODY = 65534
_CONNECTED, _DENIED, _FAILED = 0, 3, 4


def exchange_as_nobody(path: str, line: bytes | None = None) -> str:
    """Connect to the Unix stream socket ``path`` as nobody:nogroup, with no other group.

    Returns "denied" (no permission), "connected", or with ``line`` "echoed"
    when the server sent that line back.
    """
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = _FAILED
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT)
                try:
                    sock.connect(path)
                except PermissionError:
                    code = _DENIED
                else:
                    code = _CONNECTED
                    if line is not None:
                        sock.sendall(line)
                        code = 1 if sock.recv(len(line) + 1) == line else _FAILED
        finally:
            os._exit(code)
    code = wait_child_exit(pid)
    results = {_CONNECTED: "connected", _DENIED: "denied", 1: "echoed"}
    assert code in results, f"the client running as nobody failed (exit {code})"
    return results[code]


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """A directory other users may enter (pytest's ``tmp_path`` is root's alone)."""
    with tempfile.TemporaryDirectory(prefix="sockserve-") as name:
        os.chmod(name, 0o755)
        yield Path(name)
