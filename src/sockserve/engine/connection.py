"""One object per accepted connection, and the one place its outcome is decided.

Every request a server admits becomes a :class:`Connection`: the request the
stdlib hooks receive (a connected socket, or a ``(packet, socket)`` pair for
datagram servers), the peer the socket reports, the client address the hooks
see (a PROXY header may rewrite it later), when it was admitted and how it
ended. It is what flows from the serving loop through the pre-handler stage,
the strategy, the tracker, the access log and the counters.

How a connection ended is said in one vocabulary, the *outcome words*, which
the access log prints and ``stats()`` counts:

============== =====================================================================
``ok``         the handler returned normally
``reset``      the client reset or went away (``ConnectionResetError``, ...)
``timeout``    a timeout ended it: ``idle_timeout``, a handler's own socket timeout,
               or a pre-handler deadline such as ``first_byte_timeout``
``peer-error`` the client broke a limit or the protocol (``PeerError``: a line
               longer than ``max_line``, a malformed header)
``error``      the handler raised anything else (a bug: logged with its traceback)
``aborted``    a drain's deadline cut it while its handler was still running
``closed-idle`` a drain closed it before any handler started (it had sent nothing)
``denied``     ``verify_request`` returned False
``slow``       the slow-client defence took its worker back (too few bytes a second
               while others waited: see ``sockserve.security.slowclients``)
``empty``      the peer closed before sending a byte where a pre-handler step
               waited for one (a load balancer's TCP health check): ended
               quietly, no handler, no log line, not an error
``refused:R``  a limit refused it before admission; ``R`` names the limit
               (``max_connections``, ``max_connections_per_ip``, ``overflow``, ...)
============== =====================================================================

:func:`classify` is the single mapping from an exception to its outcome, its
counter in ``stats()`` and its log level; ``handle_error``, the strategies and
the pre-handler stage all use it, so a reset is a reset everywhere; the
tracker counts each connection's final word once, when it is released.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from sockserve._types import Address, Request
from sockserve.errors import PeerError

__all__ = [
    "ABORTED",
    "CLIENT_GONE_ERRORS",
    "CLOSED_IDLE",
    "COUNTER_OF",
    "DENIED",
    "EMPTY",
    "ERROR",
    "OK",
    "PEER_ERROR",
    "RESET",
    "TIMEOUT",
    "Connection",
    "ConnectionInfo",
    "Failure",
    "NothingSent",
    "Refused",
    "StepFailed",
    "StepTimedOut",
    "classify",
    "peer_ip",
    "refused",
]

OK: Final = "ok"
RESET: Final = "reset"
TIMEOUT: Final = "timeout"
PEER_ERROR: Final = "peer-error"
ERROR: Final = "error"
ABORTED: Final = "aborted"
CLOSED_IDLE: Final = "closed-idle"
DENIED: Final = "denied"
EMPTY: Final = "empty"

#: Exceptions that mean the peer went away: an event to note, not a bug to trace.
CLIENT_GONE_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class Refused(Exception):
    """A pre-handler step turned the connection away (access control, an untrusted proxy).

    Not a failure: it ends like a refusal at the door, through
    ``reject_request``, counted in ``stats().rejected`` under ``reason``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NothingSent(Exception):
    """The peer closed before sending anything a pre-handler step waited for.

    What a load balancer's plain TCP health check does (connect, close). Not a
    failure: the connection ends quietly as ``empty``, with no handler, no
    ``handle_error`` and no counter but ``completed``.
    """


class StepFailed(PeerError):
    """The peer failed a pre-handler step: a malformed PROXY header, a TLS handshake.

    ``kind`` is ``"STEP:REASON"`` from a small fixed set (``tls:not-tls``,
    ``proxy:malformed``...): what ``stats().step_failures`` counts and what the
    log line's rate limit is keyed on.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class StepTimedOut(TimeoutError):
    """A pre-handler step did not finish within its own timeout."""

    def __init__(self, step: str, name: str, timeout: float | None) -> None:
        super().__init__(f"no {name} within {timeout:g} s" if timeout else f"no {name}")
        self.kind = f"{step}:timeout"


def refused(reason: str) -> str:
    """The outcome word of a connection a limit refused (``refused:max_connections``)."""
    return f"refused:{reason}"


#: The ``stats()`` counter of each outcome word (``ok`` and refusals are counted apart).
COUNTER_OF: Final = {
    TIMEOUT: "timed_out",
    RESET: "disconnects",
    PEER_ERROR: "peer_errors",
    ERROR: "handler_errors",
    ABORTED: "aborted",
    CLOSED_IDLE: "closed_idle",
    DENIED: "denied",
    "slow": "slow_cuts",
}


class Failure:
    """How an exception ends a connection: its outcome word and its log level."""

    __slots__ = ("level", "outcome")

    def __init__(self, outcome: str, level: int) -> None:
        self.outcome = outcome
        #: How ``handle_error`` logs it: INFO for the peer's doing, ERROR for bugs.
        self.level = level


_TIMED_OUT = Failure(TIMEOUT, logging.INFO)
_GONE = Failure(RESET, logging.INFO)
_PEER = Failure(PEER_ERROR, logging.WARNING)
_BUG = Failure(ERROR, logging.ERROR)


def classify(exc: BaseException | None) -> Failure:
    """The one mapping from an exception that ended a connection to what it means.

    Order matters: ``TimeoutError`` is an ``OSError`` like the resets, and a
    ``PeerError`` may also be a ``ValueError``.
    """
    if isinstance(exc, TimeoutError):
        return _TIMED_OUT
    if isinstance(exc, PeerError):
        return _PEER
    if isinstance(exc, CLIENT_GONE_ERRORS):
        return _GONE
    return _BUG


def peer_ip(address: object) -> str | None:
    """The IP of an ``(host, port, ...)`` address; None for Unix peers, which have none.

    IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``, what a dual-stack listener
    reports for IPv4 clients) count as the IPv4 address, so one client is one
    entry in the per-IP table whichever listener it came through.
    """
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        host: str = address[0]
        if host.startswith("::ffff:") and "." in host:
            return host[7:]
        return host
    return None


@dataclass(frozen=True)
class ConnectionInfo:
    """What a handler may want to know about its connection beyond ``client_address``.

    Returned by ``server.connection_info(self.request)`` (sync and async
    handlers alike).
    """

    #: The client: the real one, after a PROXY header (what the hooks receive).
    client_address: Address
    #: Who connected to the socket: the load balancer, behind a PROXY header.
    peer: Address
    #: The PROXY protocol header (``sockserve.protocols.proxy.ProxyHeader``:
    #: addresses, TLVs), or None.
    proxy: Any
    #: The TLS session (``sockserve.security.tls.TLSInfo``: version, cipher,
    #: ALPN, SNI name, client certificate), or None for a plain connection.
    tls: Any
    #: ``time.monotonic()`` when the connection was admitted.
    admitted_at: float


class Connection:
    """An admitted request on its way from ``accept()`` to its end (see the module doc).

    Plain attributes in slots: one is made per connection on the accept path,
    so it must cost no more than a tuple would.
    """

    __slots__ = (
        "admitted_at",
        "client_address",
        "handed_over",
        "ip",
        "outcome",
        "partial",
        "peer",
        "probe",
        "proxy",
        "request",
        "step_state",
        "steps_done",
        "verify_pending",
    )

    def __init__(self, request: Request, client_address: Address) -> None:
        #: What the stdlib hooks receive: a connected socket, or ``(packet, socket)``.
        self.request: Any = request
        #: The address the socket reported (the proxy's, behind a load balancer).
        self.peer: Address = client_address
        #: The address the hooks, limits and logs see (the real client's, after PROXY).
        self.client_address: Address = client_address
        #: The key of the per-IP limit (set by the tracker at admission).
        self.ip: str | None = None
        #: ``time.monotonic()`` at admission (0.0 until admitted).
        self.admitted_at = 0.0
        #: How it ended, once decided (an outcome word); None while it runs.
        self.outcome: str | None = None
        #: True when ``verify_request`` still has to run, on the worker, before
        #: the handler (connections that went through the pre-handler stage).
        self.verify_pending = False
        #: Scratch space of the pre-handler step in progress (a partial header...).
        self.step_state: Any = None
        #: How many of the server's pre-handler steps are done (the drivers share it).
        self.steps_done = 0
        #: The PROXY protocol header the load balancer sent, if one was read.
        self.proxy: Any = None
        #: A load balancer's own health check (a PROXY LOCAL header): a reset or a
        #: vanished peer ends it as ``empty``, quietly, not as an error.
        self.probe = False
        #: The first bytes it sent were a fragment (no full line): it may wait
        #: behind complete requests for a worker (slow-client defence).
        self.partial = False
        #: A free worker took it before its first bytes (``dispatch="auto"``):
        #: the wait for them is waived, the handler reads under ``idle_timeout``.
        self.handed_over = False

    def end_as(self, outcome: str) -> None:
        """Record how the connection ended unless something decided it first.

        The first word wins: a connection aborted at a drain's deadline stays
        ``aborted`` even though its handler then sees a reset.
        """
        if self.outcome is None:
            self.outcome = outcome

    @property
    def age(self) -> float:
        """Seconds since admission."""
        return time.monotonic() - self.admitted_at

    def __repr__(self) -> str:
        return f"<Connection {self.client_address!r} {self.outcome or 'open'}>"
