"""The two systemd protocols a service needs, without depending on libsystemd.

* Socket activation: systemd binds the listening sockets and passes them as
  descriptors 3, 4, ... with ``LISTEN_FDS`` (how many), ``LISTEN_PID`` (for
  whom) and ``LISTEN_FDNAMES`` (their names, colon-separated).
* Readiness notification: a datagram such as ``READY=1`` sent to the Unix
  socket named by ``NOTIFY_SOCKET`` (a leading ``@`` means the abstract
  namespace).

Both are plain environment variables and sockets; see sd_listen_fds(3) and
sd_notify(3).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

__all__ = ["LISTEN_FDS_START", "listen_fds", "notify", "reloading_message"]

#: The first descriptor systemd passes.
LISTEN_FDS_START = 3


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> list[tuple[int, str]]:
    """The sockets systemd passed to this process, as ``(fd, name)`` pairs.

    Empty when there are none or they were meant for another process (a
    ``LISTEN_PID`` other than ours). With ``unset`` the variables are removed,
    so that children do not take the sockets as theirs.
    """
    env = os.environ if environ is None else environ
    count = env.get("LISTEN_FDS")
    pid = env.get("LISTEN_PID")
    names = env.get("LISTEN_FDNAMES", "")
    if unset:
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(name, None)
    if not count:
        return []
    if pid is not None and pid.strip() != str(os.getpid()):
        return []
    try:
        n = int(count)
    except ValueError:
        raise ValueError(f"LISTEN_FDS must be a number, got {count!r}") from None
    labels = names.split(":") if names else []
    return [(LISTEN_FDS_START + i, labels[i] if i < len(labels) else "unknown") for i in range(n)]


def notify(message: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; False when not run under it.

    Errors while sending are swallowed: a missing supervisor must never stop
    the service.
    """
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def reloading_message() -> str:
    """``RELOADING=1`` with the timestamp systemd's ``Type=notify-reload`` requires."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={usec}"
