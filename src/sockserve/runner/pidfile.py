"""The ``--pid-file``: written when serving starts, removed at exit if it is still ours."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["pid_file"]


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write this process's pid to ``path`` (if given) for the ``with`` block."""
    if not path:
        yield
        return
    with open(path, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        if _holds(path, os.getpid()):  # not if another process has taken the file over
            with contextlib.suppress(OSError):
                os.unlink(path)


def _holds(path: str, pid: int) -> bool:
    try:
        with open(path) as handle:
            return handle.read().strip() == str(pid)
    except OSError:
        return False
