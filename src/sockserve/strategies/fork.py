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
handshake) run in the child too. A refusal there (access control on the real
client) has an exit status of its own, so the parent counts it as it would
have; why a step failed (``tls:certificate``, ``proxy:timeout``...) does not
fit in an exit status, so children write it, one line each, to a pipe all of
them share (:class:`_FailureReports`), which the parent reads before it counts
the child's end. One thing cannot travel back: a PROXY header read in the
child moves the connection to the real client in the child only, so the
parent's per-IP table counts that connection under the proxy's address for
its lifetime.
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
_REFUSED_PREFIX = outcomes.refused("")


def _exit_status(conn: Connection) -> int:
    """How the child tells the parent the way ``conn`` ended (see the module doc)."""
    outcome = conn.outcome
    if outcome is not None and outcome.startswith(_REFUSED_PREFIX):
        reason = outcome[len(_REFUSED_PREFIX) :]
        if reason in _REFUSALS:
            return _REFUSED_BASE + _REFUSALS.index(reason)
    return _STATUS_OF.get(outcome, 1)


class _FailureReports:
    """One pipe from every child to the parent: the step failures each child counted.

    Opened at the first fork (a server that never forks holds no extra
    descriptors). Both ends are non-blocking: a child whose report does not
    fit (the parent has not read for thousands of connections) drops it, a
    lost count rather than a child stuck on exit. Lines are far shorter than
    ``PIPE_BUF``, so reports from concurrent children never interleave.
    """

    def __init__(self) -> None:
        self._read = self._write = -1
        self._partial = b""

    def open(self) -> None:
        if self._read < 0:
            self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    @staticmethod
    def snapshot(tracker: ConnectionTracker) -> dict[str, int]:
        return {k: n for k, n in tracker.events.items() if k.startswith(STEP_FAILURE)}

    def report(self, tracker: ConnectionTracker, before: dict[str, int]) -> None:
        """In the child: write what ``tracker`` counted since ``before``."""
        lines = [
            key.encode() + b"\n"
            for key, count in self.snapshot(tracker).items()
            for _ in range(count - before.get(key, 0))
        ]
        if lines and self._write >= 0:
            try:
                os.write(self._write, b"".join(lines))
            except OSError:
                pass  # full (or gone): a lost count, never a child that cannot exit

    def collect(self, tracker: ConnectionTracker) -> None:
        """In the parent: count what the children reported so far."""
        if self._read < 0:
            return
        data = self._partial
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            data += chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            tracker.count(line.decode(errors="replace"))

    def close(self) -> None:
        for fd in (self._read, self._write):
            if fd >= 0:
                os.close(fd)
        self._read = self._write = -1
        self._partial = b""


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
    guards_slow_clients = False

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
        self._reports = _FailureReports()

    def submit(self, conn: Connection, *, force: bool = False, later: bool = False) -> bool:
        self._reports.open()
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
            before = self._reports.snapshot(self._tracker)
            self._run(conn)
            status = _exit_status(conn)
            self._reports.report(self._tracker, before)
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
        self._reports.collect(self._tracker)  # before its end is counted
        if code is not None and _REFUSED_BASE <= code < _REFUSED_BASE + len(_REFUSALS):
            # Refused in the child (which logged it): not accepted after all.
            reason = _REFUSALS[code - _REFUSED_BASE]
            conn.end_as(outcomes.refused(reason))
            self._tracker.unadmit(conn, reason)
            return
        if code is not None:
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
        if not self._children:
            self._reports.close()  # opened again by the next fork, if any


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
