"""The production options every server takes, their validation, and how they are applied.

Each option is a class attribute (the socketserver idiom: set it in a
subclass) and a keyword-only constructor argument (which sets it on the
instance). Both are validated when the server is built, so a bad value fails
at start-up with a message naming it, not later under load.

Options meant for one kind of server are attributes of that kind only: a
stream limit on a datagram server, or a pool option on a server without a
pool, is a ``TypeError``/``ValueError`` that says so.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Literal, TypedDict

from sockserve.strategies.eventloop import EVENT_LOOP_KINDS

__all__ = ["STREAM_ONLY", "ServerOptions", "apply_options"]


class ServerOptions(TypedDict, total=False):
    """Keyword-only constructor arguments accepted by sockserve servers."""

    #: Concurrent connections for the whole server (stream servers); None: no limit.
    max_connections: int | None
    #: Concurrent connections from one client IP address; None: no limit.
    max_connections_per_ip: int | None
    #: Seconds a connection may stay silent (and a send may block); None: forever.
    idle_timeout: float | None
    #: Longest line ``rfile.readline()`` returns, terminator included; None: unbounded.
    max_line: int | None
    #: Log one line per connection to the "sockserve.access" logger.
    access_log: bool
    #: Set TCP_NODELAY on accepted TCP connections (no Nagle delay on small writes).
    tcp_nodelay: bool
    #: Pool servers: worker threads.
    max_workers: int
    #: Pool servers: accepted connections that may wait for a worker.
    max_pending: int
    #: Pool servers: workers that start requests at once, before any queueing delay.
    eager_workers: int
    #: Pool servers: seconds a request waits for a busy worker before the pool grows.
    grow_after: float
    #: Pool servers: what to do when workers and queue are full.
    overflow: Literal["block", "reject"]
    #: Pool servers: hand a connection to a worker at once, or once it is readable.
    dispatch: Literal["immediate", "readable"]
    #: Pool servers with dispatch="readable": seconds to wait for the first byte.
    first_byte_timeout: float | None
    #: Async servers: "auto" (uvloop when installed), "asyncio" or "uvloop".
    event_loop: Literal["auto", "asyncio", "uvloop"]


#: Options that only make sense for connections (stream sockets).
STREAM_ONLY = frozenset(
    {
        "max_connections",
        "max_connections_per_ip",
        "idle_timeout",
        "max_line",
        "dispatch",
        "tcp_nodelay",
    }
)
# (access_log works for datagram servers too: one line per datagram handled.)


def _positive_int_or_none(name: str, value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


#: Timeouts beyond this (a year) are surely mistakes, and sockets and poll()
#: reject them anyway (inf, or more than 2**31 ms): use None for "forever".
_LONGEST_TIMEOUT = 365 * 24 * 3600.0


def _positive_number_or_none(name: str, value: object) -> object:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < _LONGEST_TIMEOUT
    ):
        raise ValueError(
            f"{name} must be a positive, finite number of seconds or None, got {value!r}"
        )
    return float(value)


def _seconds_at_least_zero(name: str, value: object) -> object:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < _LONGEST_TIMEOUT
    ):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _int_at_least(minimum: int) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return value

    return check


def _one_of(*choices: str) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if value not in choices:
            wanted = " or ".join(repr(c) for c in choices)
            raise ValueError(f"{name} must be {wanted}, got {value!r}")
        return value

    return check


def _boolean(name: str, value: object) -> object:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


_VALIDATORS: dict[str, Callable[[str, object], object]] = {
    "access_log": _boolean,
    "tcp_nodelay": _boolean,
    "max_connections": _positive_int_or_none,
    "max_connections_per_ip": _positive_int_or_none,
    "idle_timeout": _positive_number_or_none,
    "max_line": _positive_int_or_none,
    "max_workers": _int_at_least(1),
    "max_pending": _int_at_least(0),
    "eager_workers": _int_at_least(1),
    "grow_after": _seconds_at_least_zero,
    "overflow": _one_of("block", "reject"),
    "dispatch": _one_of("immediate", "readable"),
    "first_byte_timeout": _positive_number_or_none,
    "event_loop": _one_of(*EVENT_LOOP_KINDS),
}

#: Options only some servers have, and which servers those are (for the error).
_OWNERS = {"event_loop": "async servers (AsyncMixIn)"}


def apply_options(server: object, options: dict[str, object]) -> None:
    """Validate ``options`` and the class-level defaults, then set the options on ``server``.

    Raises ``TypeError`` for an option the server does not have and
    ``ValueError`` for a bad value; both messages name the option.
    """
    cls = type(server)
    for name, value in options.items():
        if name not in _VALIDATORS:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
        if not hasattr(cls, name):
            owner = _OWNERS.get(name, "pool servers (ThreadPoolMixIn)")
            raise TypeError(f"{cls.__name__}() does not take {name!r}: it is an option of {owner}")
        setattr(server, name, _VALIDATORS[name](name, value))
    datagram = getattr(server, "socket_type", socket.SOCK_STREAM) == socket.SOCK_DGRAM
    for name, check in _VALIDATORS.items():
        if name in options or not hasattr(cls, name):
            continue
        setattr(server, name, check(name, getattr(cls, name)))
    if datagram:
        for name in sorted(STREAM_ONLY):
            value = getattr(server, name, None)
            if value is not None and value != "immediate" and value is not False:
                raise ValueError(
                    f"{name}={value!r} applies to stream servers only; "
                    f"{cls.__name__} is a datagram server"
                )
