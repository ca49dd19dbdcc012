"""A forked child per connection: ``ForkingMixIn``'s strategy, with the stdlib's semantics.

The child serves the connection (pre-handler steps included, where it
serves) and exits; the parent closes its copy and goes back to accepting.
``max_children`` caps the children alive at once: at the cap the parent
waits for one to exit before forking another, in short slices so a shutdown
or drain is not held up.

A child reports how its connection ended through its exit status (one code
per outcome word), so the parent's counters and ``stats()`` stay exact even
though the handler ran in another process. Pre-handler steps that could not
finish on the accepting thread (a PROXY header still on its way, a TLS
handshake) run in the child too: a refusal there (access control on the real
client) and a step's failure kind (``proxy:timeout``) have codes of their own,
so the parent counts them as it would have. One thing cannot travel back: a
PROXY header read in the child moves the connection to the real client in the
child only, so the parent's per-IP table counts that connection under the
proxy's address for its lifetime.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

from sockserve.engine import connection as outcomes
from sockserve.engine.connection import Connection
from sockserve.engine.pipeline import STEP_FAILURE
from sockserve.engine.tracker import ConnectionTracker
from sockserve.strategies.base import RunConnection, WorkerCounts

__all__ = ["ForkPerConnection", "wait_for_any_exit"]

#: Exit status of a child <-> how its connection ended.
_STATUS_OF = {
    None: 0,
    outcomes.OK: 0,
    outcomes.ERROR: 1,
    outcomes.RESET: 2,
    outcomes.TIMEOUT: 3,
    outcomes.PEER_ERROR: 4,
    outcomes.DENIED: 5,
    outcomes.EMPTY: 6,
}
_OUTCOME_OF = {status: word for word, status in _STATUS_OF.items() if word is not None}
#: Refusals by a pre-handler step in the child: exit status 16 + the index.
_REFUSALS = (
    "deny",
    "not_allowed",
    "proxy_untrusted",
    "max_connections_per_ip",
    "ip_table_full",
)
_REFUSED_BASE = 16
#: Pre-handler step failures in the child: exit status 64 + the index. Kinds
#: not listed are still reported by their outcome word, just not by kind.
_STEP_FAILURES = (
    "proxy:missing",
    "proxy:malformed",
    "proxy:truncated",
    "proxy:timeout",
    "first-bytes:timeout",
    "tls:timeout",
    "tls:not-tls",
)
_FAILED_BASE = 64
_REFUSED_PREFIX = outcomes.refused("")


def _exit_status(conn: Connection) -> int:
    """How the child tells the parent the way ``conn`` ended (see the module doc)."""
    outcome = conn.outcome
    if outcome is not None and outcome.startswith(_REFUSED_PREFIX):
        reason = outcome[len(_REFUSED_PREFIX) :]
        if reason in _REFUSALS:
            return _REFUSED_BASE + _REFUSALS.index(reason)
    elif conn.failed_step in _STEP_FAILURES:
        return _FAILED_BASE + _STEP_FAILURES.index(conn.failed_step)
    return _STATUS_OF.get(outcome, 1)


class ForkingHost(Protocol):
    """What the strategy needs of its server (``ForkingMixIn`` provides it)."""

    active_children: set[int] | None
    max_children: int

    def close_request(self, request: object) -> None: ...


class ForkPerConnection:
    """Forks a child per connection and reaps it (see the module doc)."""

    background = True
    prepares_in_place = True
    blocking_sockets = True

    def __init__(
        self,
        host: ForkingHost,
        run: RunConnection,
        tracker: ConnectionTracker,
        *,
        listener: Callable[[], socket.socket | None],
        stopping: Callable[[], bool],
    ) -> None:
        self._host = host
        self._run = run
        self._tracker = tracker
        self._listener = listener
        self._stopping = stopping
        #: pid -> the connection that child serves; released when it is reaped.
        self._children: dict[int, Connection] = {}

    def submit(self, conn: Connection, *, force: bool = False) -> bool:
        pid = os.fork()
        if pid:
            host = self._host
            if host.active_children is None:
                host.active_children = set()
            host.active_children.add(pid)
            self._children[pid] = conn
            host.close_request(conn.request)
            return True
        self._serve_in_child(conn)  # never returns

    def _serve_in_child(self, conn: Connection) -> NoReturn:
        # Never return into the parent's serving loop. A stream child drops its
        # copy of the listener, so that closing it in the parent (a drain)
        # makes the kernel refuse new clients at once.
        status = 1
        try:
            listener = self._listener()
            if listener is not None:
                listener.close()
            self._run(conn)
            status = _exit_status(conn)
        finally:
            os._exit(status)

    def collect(self, *, blocking: bool = False) -> None:
        """Reap exited children; wait while at ``max_children``, or for all if ``blocking``."""
        host = self._host
        children = host.active_children
        if children is None:
            return
        while len(children) >= host.max_children and not self._stopping():
            wait_for_any_exit(children, 0.1)
            self._reap(children.copy(), os.WNOHANG)
        self._reap(children.copy(), 0 if blocking else os.WNOHANG)

    def _reap(self, pids: set[int], flags: int) -> None:
        """waitpid each of ``pids`` (only ours: never another part of the program's children)."""
        for pid in pids:
            try:
                reaped, status = os.waitpid(pid, flags)
            except ChildProcessError:
                self._reaped(pid, None)  # reaped elsewhere already
                continue
            except OSError:
                continue
            if reaped:  # (0, 0) means the child is still running
                self._reaped(reaped, os.waitstatus_to_exitcode(status))

    def _reaped(self, pid: int, code: int | None) -> None:
        if self._host.active_children is not None:
            self._host.active_children.discard(pid)
        conn = self._children.pop(pid, None)
        if conn is None:
            return
        if code is not None and _REFUSED_BASE <= code < _REFUSED_BASE + len(_REFUSALS):
            # Refused in the child (which logged it): not accepted after all.
            reason = _REFUSALS[code - _REFUSED_BASE]
            conn.end_as(outcomes.refused(reason))
            self._tracker.unadmit(conn, reason)
            return
        if code is not None and _FAILED_BASE <= code < _FAILED_BASE + len(_STEP_FAILURES):
            kind = _STEP_FAILURES[code - _FAILED_BASE]
            self._tracker.count(STEP_FAILURE + kind)
            conn.end_as(outcomes.TIMEOUT if kind.endswith(":timeout") else outcomes.PEER_ERROR)
        elif code is not None:
            conn.end_as(_OUTCOME_OF.get(code, outcomes.ERROR))
        self._tracker.release(conn)

    def has_room(self) -> bool:
        return True  # collect() makes the loop wait at max_children

    def counts(self) -> WorkerCounts:
        children = len(self._host.active_children or ())
        return WorkerCounts(children, children, 0)

    def close_idle(self) -> list[Connection]:
        return []

    def abort(self, conns: list[Connection]) -> list[Connection]:
        """Kill the children still running.

        SIGKILL, not SIGTERM: a child inherits the parent's Python signal
        handlers, which for a server usually only record SIGTERM.
        """
        for pid in list(self._host.active_children or ()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited meanwhile; collect() reaps it
        return []

    def wait_idle(self, deadline: float | None, give_up: threading.Event | None = None) -> bool:
        """Reap children as they exit until none is left, the deadline, or ``give_up``."""
        while True:
            self._reap(set(self._host.active_children or ()), os.WNOHANG)
            if not self._host.active_children:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or (
                give_up is not None and give_up.is_set()
            ):
                return False
            # Short slices when a give-up may arrive, so it is noticed promptly.
            wait_for_any_exit(
                self._host.active_children, 0.1 if remaining is None else min(remaining, 0.1)
            )

    def close(self, *, wait: bool, timeout: float | None) -> None:
        if not wait:
            self.collect()
        elif timeout is None:
            self.collect(blocking=True)
        else:
            self.wait_idle(time.monotonic() + timeout)


def wait_for_any_exit(pids: set[int], timeout: float) -> None:
    """Block until one of ``pids`` exits or ``timeout`` passes, without polling.

    Uses Linux pidfds; where they are missing, waits the timeout slice out.
    """
    if not hasattr(os, "pidfd_open"):
        time.sleep(min(timeout, 0.05))
        return
    fds: list[int] = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                return  # already exited: the caller reaps it now
        with selectors.DefaultSelector() as selector:
            for fd in fds:
                selector.register(fd, selectors.EVENT_READ)
            selector.select(timeout)
    finally:
        for fd in fds:
            os.close(fd)
