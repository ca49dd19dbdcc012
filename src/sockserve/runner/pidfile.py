"""The ``--pid-file``: written before anything binds, locked while we run, removed at exit.

The file is held with ``flock`` for the life of the master (its workers share
the lock: one open file description, inherited across ``fork``). A second
instance started with the same file finds the lock taken and refuses to
start, as gunicorn does, instead of silently overwriting the pid of a live
server. A lock tells a live owner from a stale file better than
``kill(pid, 0)``: a crashed server's pid may have been reused by an
unrelated process, but its lock died with it, so a stale file is simply
taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

__all__ = ["PidFileError", "pid_file"]


class PidFileError(Exception):
    """The pid file cannot be written, or a running process holds it (exit status 2)."""


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write this process's pid to ``path`` (if given) and hold it locked for the block."""
    if not path:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise PidFileError(f"cannot write pid file {path!r}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise PidFileError(
                f"pid file {path!r} is held by a running process (pid {owner}): "
                "is sockserve already running?"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if _holds(path, fd):  # not if another process has taken the file over
                with contextlib.suppress(OSError):
                    os.unlink(path)
    finally:
        os.close(fd)


def _holds(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file we locked (and not a newer one)."""
    try:
        here, there = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
