"""Which Unix socket file a server created, so that closing removes exactly that file.

A Unix stream or datagram server leaves its socket file behind in the stdlib,
and the next bind on that path fails with "Address already in use". sockserve
removes it on ``server_close``, but only the file this process bound (same
device and inode, same pid): not a file another server has since bound at the
same path, and not from a forked child closing its copy.

It can also create the file with a chosen mode, owner and group (a proxy
running as another user must be allowed to connect: that takes write
permission on the file). ``chmod`` after ``bind`` would leave a moment when
the file exists with the umask's mode, and setting the umask is process-wide
(other threads create files too). So the socket is bound in a private
directory (0700, made next to the target, so on the same file system),
given its mode and owner there, and only then linked to its final name:
the path appears already right, or not at all. ``link`` rather than
``rename``: it fails if the name exists, as ``bind`` would, where ``rename``
would silently replace a live server's file.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shutil
import socket
import stat
import tempfile
from typing import TypeGuard

__all__ = [
    "SocketFileRecord",
    "bind_socket_file",
    "group_id",
    "is_socket_path",
    "record_socket_file",
    "remove_socket_file",
    "user_id",
]

#: The longest path a Unix socket address holds (sun_path, with its final NUL).
_SUN_PATH_MAX = 107


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
    if not is_socket_path(address):
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


def user_id(user: int | str | None) -> int:
    """The uid of a user name or number (-1, "unchanged", for None); ValueError if unknown."""
    if user is None:
        return -1
    if isinstance(user, int) or user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"no user named {user!r}") from None


def group_id(group: int | str | None) -> int:
    """The gid of a group name or number (-1, "unchanged", for None); ValueError if unknown."""
    if group is None:
        return -1
    if isinstance(group, int) or group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"no group named {group!r}") from None


def is_socket_path(address: object) -> TypeGuard[str | bytes]:
    """Whether binding ``address`` creates a file (not an abstract or unnamed socket)."""
    return isinstance(address, str | bytes) and bool(address) and address[:1] not in ("\0", b"\0")


def bind_socket_file(
    sock: socket.socket,
    path: str | bytes,
    *,
    mode: int | None = None,
    uid: int = -1,
    gid: int = -1,
) -> SocketFileRecord | None:
    """Bind ``sock`` to ``path``; the file appears with ``mode``, ``uid`` and ``gid`` already set.

    Without a mode, owner or group this is a plain ``bind`` (the umask's mode,
    the process's owner). Returns the record of the file created, for
    :func:`remove_socket_file`. Note that ``sock.getsockname()`` then names
    the private path the socket was bound to, not ``path``.
    """
    if (mode is None and uid == -1 and gid == -1) or not is_socket_path(path):
        sock.bind(path)
        return record_socket_file(path)
    target = os.fsdecode(path)
    private = tempfile.mkdtemp(prefix=".sockserve-", dir=os.path.dirname(target) or ".")
    try:
        temporary = os.path.join(private, "s")
        _bind_in(sock, private, temporary)
        if mode is not None:
            os.chmod(temporary, mode)
        if uid != -1 or gid != -1:
            os.chown(temporary, uid, gid)
        info = os.stat(temporary)
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)) from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return SocketFileRecord(path, info.st_dev, info.st_ino)


def _bind_in(sock: socket.socket, private: str, temporary: str) -> None:
    """Bind to ``temporary``; through /proc/self/fd if its path is too long for an address.

    The private name is longer than a short target's, so a target near the
    length limit would fail here although ``bind`` on it would not.
    """
    if len(os.fsencode(temporary)) <= _SUN_PATH_MAX:
        sock.bind(temporary)
        return
    directory = os.open(private, getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY)
    try:
        sock.bind(f"/proc/self/fd/{directory}/s")
    finally:
        os.close(directory)
