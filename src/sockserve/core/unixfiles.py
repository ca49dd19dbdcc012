"""Which Unix socket file a server created, so that closing removes exactly that file.

A Unix stream or datagram server leaves its socket file behind in the stdlib,
and the next bind on that path fails with "Address already in use". sockserve
removes it on ``server_close``, but only the file this process bound (same
device and inode, same pid): not a file another server has since bound at the
same path, and not from a forked child closing its copy.
"""

from __future__ import annotations

import os
import stat

__all__ = ["SocketFileRecord", "record_socket_file", "remove_socket_file"]


class SocketFileRecord:
    """Which socket file this process created, so only that exact file is removed."""

    __slots__ = ("device", "inode", "path", "pid")

    def __init__(self, path: str | bytes, device: int, inode: int) -> None:
        self.path = path
        self.device = device
        self.inode = inode
        self.pid = os.getpid()


def record_socket_file(address: object) -> SocketFileRecord | None:
    """Remember the socket file just bound (nothing for abstract or unnamed sockets)."""
    if not isinstance(address, str | bytes) or not address or address[:1] in ("\0", b"\0"):
        return None
    try:
        info = os.stat(address)
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode):
        return None
    return SocketFileRecord(address, info.st_dev, info.st_ino)


def remove_socket_file(record: SocketFileRecord | None) -> None:
    """Unlink the socket file if it is still the one we created, from the process that did.

    A forked child must not remove its parent's file, and a file another server
    has since bound at the same path is not ours to remove.
    """
    if record is None or record.pid != os.getpid():
        return
    try:
        info = os.stat(record.path)
        if (info.st_dev, info.st_ino) == (record.device, record.inode):
            os.unlink(record.path)
    except OSError:
        pass  # already gone, or not ours any more
