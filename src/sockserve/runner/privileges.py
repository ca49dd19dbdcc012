"""``--user``, ``--group`` and ``--umask``: who the served code runs as, and its file mode mask.

The master keeps the identity it was started with (root, to bind port 443):
it opens the listeners, writes and locks the pid file, creates Unix socket
files and removes them at exit. Each worker drops to ``--user``/``--group``
right after the fork, once it has read the TLS certificate and key (which may
then stay readable by root only) and before it imports the target, so
neither the application's code nor any connection ever runs as root; a
reload's new workers read the rotated files the same way. Without worker
processes (``--workers 0``) the one process drops at the same point, and what
root alone may do is then out of reach: a SIGHUP's certificate reload needs
the files readable by the user, and the pid file and socket files are removed
at exit only where the user may (a pid file left behind is taken over by the
next start: nobody holds its lock).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from sockserve.core.unixfiles import group_id

__all__ = ["Identity", "drop_privileges", "resolve_identity"]


@dataclass(frozen=True)
class Identity:
    """The user and groups to become: numeric ids, the user's name for its groups."""

    uid: int | None
    gid: int | None
    user_name: str | None = None


def resolve_identity(user: str | None, group: str | None) -> Identity | None:
    """Look ``user`` and ``group`` (names or numbers) up; ValueError naming what is unknown.

    Without ``group`` the user's primary group is used, as ``su`` and gunicorn do.
    """
    if user is None and group is None:
        return None
    uid = gid = None
    name = None
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            if not user.isdigit():
                raise ValueError(f"no such user {user!r}") from None
            uid = int(user)  # a bare number without an entry is allowed, as chown does
        else:
            uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if group is not None:
        gid = group_id(group)  # a bare number without an entry is allowed, as chown does
    return Identity(uid, gid, name)


def needs_root(identity: Identity | None) -> bool:
    """Whether becoming ``identity`` needs privileges this process does not have."""
    if identity is None or os.geteuid() == 0:
        return False
    return (identity.uid is not None and identity.uid != os.getuid()) or (
        identity.gid is not None and identity.gid != os.getgid()
    )


def drop_privileges(identity: Identity | None) -> None:
    """Become ``identity``: supplementary groups, then the group, then the user (irrevocably)."""
    if identity is None or not needs_root_now(identity):
        return
    if identity.gid is not None:
        if identity.user_name is not None:
            os.initgroups(identity.user_name, identity.gid)
        else:
            os.setgroups([identity.gid])
        os.setresgid(identity.gid, identity.gid, identity.gid)
    if identity.uid is not None:
        os.setresuid(identity.uid, identity.uid, identity.uid)
    if identity.uid not in (None, 0) and _can_regain_root():
        raise PermissionError("privileges were not dropped: the process can become root again")


def needs_root_now(identity: Identity) -> bool:
    """Whether anything changes (running as the identity already is no error)."""
    return (identity.uid is not None and identity.uid != os.geteuid()) or (
        identity.gid is not None and identity.gid != os.getegid()
    )


def _can_regain_root() -> bool:
    try:
        os.setuid(0)
    except PermissionError:
        return False
    return True
