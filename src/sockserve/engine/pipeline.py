"""The path every connection takes, whatever the strategy: accept, admit, prepare, serve, end.

One :class:`ConnectionPipeline` per server holds the state of that path (the
tracker, the accept back-off, the pre-handler stage, the strategy) and runs
it, calling the server's stdlib hooks in the stdlib's order:

``get_request`` -> admission (``max_connections``, ``max_connections_per_ip``)
-> [pre-handler steps] -> ``verify_request`` -> ``process_request`` ->
``finish_request`` (the handler) -> ``shutdown_request`` -> ``close_request``,
with ``handle_error`` for exceptions and ``reject_request`` for refusals.

Where each stage runs:

* accepting, admission and (for servers without pre-handler steps)
  ``verify_request``: the serving loop's thread, as in the stdlib;
* pre-handler steps: the :class:`~sockserve.engine.prepare.Preparer` thread
  (thread and pool strategies) or where the connection is served (inline,
  fork); ``verify_request`` then runs on the worker, before the handler;
* the handler and the end: wherever the strategy serves (:meth:`serve`).

The end of every connection goes through :meth:`end`, which calls
``shutdown_request`` and releases the connection's place; its outcome word
(see :mod:`~sockserve.engine.connection`) is decided once, and the tracker
counts it on release.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sockserve._types import Address, Request
from sockserve.core.accept import AcceptThrottle
from sockserve.core.connopts import ConnectionOptions, TcpSetting, tcp_settings
from sockserve.core.timeouts import IdleTimeoutSocket
from sockserve.engine.connection import (
    CLIENT_GONE_ERRORS,
    CLOSED_IDLE,
    DENIED,
    EMPTY,
    OK,
    RESET,
    Connection,
    NothingSent,
    Refused,
    StepFailed,
    StepTimedOut,
    classify,
    refused,
)
from sockserve.engine.lifecycle import Lifecycle, State
from sockserve.engine.prepare import DONE, Preparer, Step, advance_cheap, prepare_in_place
from sockserve.engine.tracker import ConnectionTracker
from sockserve.observability.access import log_access, tcp_byte_counts
from sockserve.observability.logs import RateLimitedLog, describe_address, server_logger
from sockserve.observability.recorder import RequestRecorder
from sockserve.security.slowclients import GuardedSocket, GuardedSSLSocket
from sockserve.security.slowclients import release as release_guarded
from sockserve.strategies.base import Strategy

if TYPE_CHECKING:
    from sockserve.servers import BaseServer

__all__ = ["LOG_INTERVAL", "ConnectionPipeline"]

#: Seconds within which repeated log lines of one kind are counted, not written.
LOG_INTERVAL = 10.0
#: Prefix of the tracker's counters of pre-handler step failures ("step:tls:timeout").
STEP_FAILURE = "step:"
#: Socket classes a connection may be switched from to GuardedSocket.
_GUARDABLE = (socket.socket, IdleTimeoutSocket)
#: Outcome words of refusals start with it.
REFUSED = refused("")


class ConnectionPipeline:
    """Runs one server's connections from ``accept()`` to their end (see the module doc)."""

    def __init__(self, server: BaseServer) -> None:
        self.server = server
        self.tracker = ConnectionTracker(
            max_connections=server.max_connections,
            max_connections_per_ip=server.max_connections_per_ip,
        )
        self.lifecycle = Lifecycle(final_close=server._closed_for_good)
        self.throttle = AcceptThrottle()
        #: ``time.monotonic()`` before which the listener rests (accept back-off).
        self.resume_accepting_at = 0.0
        self._connection_options = ConnectionOptions()
        #: The TCP options (keepalive, user timeout) last read, and their setsockopt calls.
        self._tcp_options: tuple[object, ...] = ()
        self._tcp_settings: tuple[TcpSetting, ...] = ()
        self._refusals = RateLimitedLog(server_logger, LOG_INTERVAL)
        #: handle_error's lines, rate-limited by kind (outcome, exception, place):
        #: the one limiter every peer-caused log line goes through.
        self.error_log = RateLimitedLog(server_logger, LOG_INTERVAL)
        self._gates: list[Callable[[], bool]] = []
        self.strategy: Strategy = server._make_strategy(self)
        self.steps: tuple[Step, ...] = tuple(server._pre_handler_steps())
        #: The listener the steps were worked out for (the classic TLS recipe
        #: replaces ``server.socket`` after construction: the steps follow it),
        #: and whether there was a TLS context then (``server.ssl_context =
        #: ctx`` on a plain server turns TLS on for new connections).
        self._steps_listener = server._listening_socket()
        self._steps_tls = server.ssl_context is not None
        #: Handlers a drain aborted and gave up waiting for: server_close must not wait on them.
        self.abandoned = 0
        self._preparer: Preparer | None = None
        #: For each step index: whether every step from there on may wait on the
        #: thread that serves the connection (see ``_prepare``).
        self._in_place_from: tuple[bool, ...] = (True,)
        self._adopt_steps()
        #: Whether handlers get blocking sockets, whose idle timeout the kernel keeps.
        self._kernel_timeouts = self.strategy.blocking_sockets
        #: The per-connection histograms, when metrics asked for them (None: no cost).
        self.recorder: RequestRecorder | None = None

    # -- the accept loop's side -----------------------------------------------

    def add_gate(self, gate: Callable[[], bool]) -> None:
        self._gates.append(gate)

    def may_accept(self) -> bool:
        """Whether the serving loop should watch the listener now.

        False under back-pressure (the strategy has no room: the kernel backlog
        holds new clients) or when a gate (the runner's request budget) is
        closed. Connections held by the pre-handler stage are bounded by
        ``max_connections``, not by the strategy's queue.
        """
        for gate in self._gates:
            if not gate():
                return False
        return self._holds_connections() or self.strategy.has_room()

    def _holds_connections(self) -> bool:
        """Whether the pre-handler stage takes connections past the strategy's room.

        It then accepts up to ``max_connections`` (the bound of everything it
        and the strategy hold), and what it hands on is never refused as
        overflow.
        """
        return self._preparer is not None and not self._in_place_from[0]

    def accepting_now(self) -> tuple[bool, float | None]:
        """(whether to watch the listener, seconds until an accept back-off ends, if one runs)."""
        if self.resume_accepting_at:
            rest = self.resume_accepting_at - time.monotonic()
            if rest > 0:
                return False, rest
            self.resume_accepting_at = 0.0
        return self.may_accept(), None

    def accept_one(self) -> bool:
        """Accept one connection (the listener is readable) and send it on its way.

        Returns False when nothing was accepted (nobody was waiting, or the
        accept failed): a caller accepting in batches stops there.
        """
        server = self.server
        try:
            request, client_address = server.get_request()
        except BlockingIOError:
            return False  # nobody waiting: another worker took it, or a batch is done
        except OSError as exc:
            self._accept_failed(exc)
            return False
        self.throttle.succeeded()
        conn = Connection(request, client_address)
        if (
            server._listening_socket() is not self._steps_listener
            or (server.ssl_context is not None) != self._steps_tls
        ):
            self._refresh_steps()
        reason = self.tracker.admit(conn)
        if reason is not None:
            self.refuse(conn, reason)
            return True
        try:
            # Read per connection: the runner swaps the listener after construction.
            nodelay = server.tcp_nodelay and server._is_tcp()
            idle_timeout = server.idle_timeout if self._kernel_timeouts else None
            # Two attribute reads when neither is set (interval and count need keepalive).
            tcp = self._tcp() if server.tcp_keepalive or server.tcp_user_timeout is not None else ()
            if idle_timeout is not None or nodelay or tcp:
                self._connection_options.apply(
                    server._listening_socket(), request, idle_timeout, nodelay, tcp
                )
            if self.strategy.guards_slow_clients and type(request) in _GUARDABLE:
                request.__class__ = GuardedSocket  # same layout: I/O the guard can see
            if self.steps:
                if self._prepare(conn):
                    return True
                # Done here: a step may have moved it (a PROXY header names the real client).
                request, client_address = conn.request, conn.client_address
            # Unlike the stdlib, an exception from verify_request goes to
            # handle_error: it ends this request, not the serving loop.
            if not server.verify_request(request, client_address):
                conn.end_as(DENIED)
                self.end(conn)
                return True
            server.process_request(request, client_address)
        except Exception:
            self.failed(conn)
            self.end(conn)
            return True
        except BaseException:
            self.end(conn)
            raise
        if not self.strategy.background:
            # process_request served it (and called shutdown_request): release.
            self.tracker.release(conn)
        return True

    def _tcp(self) -> tuple[TcpSetting, ...]:
        """The setsockopt calls of the server's keepalive and user-timeout options (cached)."""
        server = self.server
        options = (
            server.tcp_keepalive,
            server.tcp_keepalive_interval,
            server.tcp_keepalive_count,
            server.tcp_user_timeout,
            server._is_tcp(),
        )
        if options != self._tcp_options:
            self._tcp_options = options
            self._tcp_settings = tcp_settings(*options[:4]) if options[4] else ()
        return self._tcp_settings

    def _accept_failed(self, exc: OSError) -> None:
        """Log a failed ``get_request`` by its class and rest the listener if needed."""
        pause = self.throttle.failed(exc, describe_address(self.server.server_address))
        if pause:
            self.resume_accepting_at = time.monotonic() + pause

    def refuse(self, conn: Connection, reason: str) -> None:
        """Log (rate-limited) and reject a connection a limit did not admit."""
        self._refusals.log(
            logging.WARNING,
            reason,
            "refused connection from %s: %s reached",
            describe_address(conn.client_address),
            reason,
        )
        server = self.server
        if server.access_log:
            log_access(conn.request, conn.client_address, refused(reason), None)
        try:
            server.reject_request(conn.request, conn.client_address, reason)
        except Exception:
            server.handle_error(conn.request, conn.client_address)
            server.shutdown_request(conn.request)

    def submit(self, conn: Connection) -> None:
        """Hand ``conn`` to the strategy (``process_request``'s work); refuse it if full.

        A prepared connection (``verify_pending``), any connection while the
        pre-handler stage holds connections, and the backlog a drain empties
        are bounded by ``max_connections``, not by the strategy's queue: they
        are taken even past it.
        """
        force = (
            conn.verify_pending
            or self.lifecycle.state is State.DRAINING
            or self._holds_connections()
        )
        if not self.strategy.submit(conn, force=force, later=conn.partial):
            self.overflowed(conn)

    def overflowed(self, conn: Connection) -> None:
        """The strategy had no room after all (overflow="reject", or a race): refuse ``conn``."""
        self.tracker.unadmit(conn, "overflow")
        self.refuse(conn, "overflow")

    # -- the pre-handler stage --------------------------------------------------

    def _adopt_steps(self) -> None:
        """Work out what ``self.steps`` needs: per-IP exemptions, where they wait, a preparer."""
        steps = self.steps
        for step in steps:
            # A step that moves connections to their real client (the PROXY
            # header) names the peers (the proxies) whose own address must
            # not take per-IP slots at admission.
            exempt = getattr(step, "per_ip_exempt", None)
            if exempt is not None:
                self.tracker.per_ip_exempt = exempt
        self._in_place_from = tuple(
            all(getattr(step, "waits_in_place", False) for step in steps[i:])
            for i in range(len(steps) + 1)
        )
        if steps and not self._in_place_from[0]:
            # (Steps that may all wait in place need no preparer, and the
            # listener keeps its back-pressure: see may_accept.)
            self._make_preparer()

    def _make_preparer(self) -> None:
        """The selector thread's home, for strategies that do not prepare in place."""
        if self._preparer is None and not self.strategy.prepares_in_place:
            self._preparer = Preparer(
                on_ready=self._prepared,
                on_failed=self._preparation_failed,
                name=f"sockserve-{type(self.server).__name__}-prepare",
            )

    def _refresh_steps(self) -> None:
        """The listener changed (a wrapped socket, a handed-over descriptor), or TLS was
        turned on or off (``server.ssl_context``): redo the steps."""
        self._steps_listener = self.server._listening_socket()
        self._steps_tls = self.server.ssl_context is not None
        self.steps = tuple(self.server._pre_handler_steps())
        self._adopt_steps()

    def replace_request(self, conn: Connection, request: Request) -> None:
        """A step replaced the connection's request (TLS wraps the socket): follow it.

        A TLS socket wrapped around a guarded one stays guarded: it becomes a
        :class:`GuardedSSLSocket` (same layout), whose reads and writes the
        slow-client guard counts as it counts a plain connection's.
        """
        if type(request) is ssl.SSLSocket and type(conn.request) is GuardedSocket:
            release_guarded(conn.request)  # detached: its counts would outlive it (STARTTLS)
            request.__class__ = GuardedSSLSocket
        self.tracker.rekey(conn, request)

    def _prepare(self, conn: Connection) -> bool:
        """Start the pre-handler steps: the cheap ones here, the rest where they belong.

        Returns False when every step finished right here (the client's bytes
        were there, a free worker took a connection that may speak first): the
        caller then goes on as without steps, ``verify_request`` before
        ``process_request`` on this thread, in the stdlib's order.
        """
        conn.verify_pending = True
        if self._worker_reads_first(conn):
            self.server.process_request(conn.request, conn.client_address)
            return True
        try:
            want = advance_cheap(conn, self.steps)
        except Exception:
            self.failed(conn)
            self.end(conn)
            return True
        if want == DONE:
            conn.verify_pending = False
            return False
        if (
            self._preparer is None
            or self._in_place_from[conn.steps_done]
            or self._free_worker_takes(conn)
        ):
            # The strategy runs what is left where it serves (inline, a forked
            # child, the connection's task), or what is left may wait there:
            # steps that wait only on trusted peers that send at once (a PROXY
            # header). A hop through the preparer thread costs a Python server
            # more than the wait: measured, ~40% CPU per connection on churn
            # with the pool when 10% of headers came after the accept.
            self.server.process_request(conn.request, conn.client_address)
        elif not self._preparer.prepare(conn, self.steps, max(want, 0)):
            self.end(conn)  # the preparer is stopping (a drain): nothing starts now
        return True

    def _worker_reads_first(self, conn: Connection) -> bool:
        """Whether the first step's reads should happen on a worker, not on this thread.

        A step marked ``prefers_worker`` (the PROXY header) makes system calls
        that release the GIL; on the accepting thread, with busy workers, each
        costs a GIL hand-off (measured: 20-50 µs of wall time per call, and a
        third more server CPU per connection on churn). When the steps may run
        where the connection is served and a worker is free, they run there,
        in parallel with accepting.
        """
        if self._preparer is None or not getattr(self.steps[0], "prefers_worker", False):
            return False
        return self._in_place_from[0] or self._free_worker_takes(conn)

    def _free_worker_takes(self, conn: Connection) -> bool:
        """Whether what is left may run on a worker because one is free now.

        The steps left either wait in place (a PROXY header that is on its
        way) or wait for first bytes only while no worker is free
        (``dispatch="auto"``): with a free worker the connection goes to it,
        which finishes the in-place steps and then skips the wait (the handler
        reads under ``idle_timeout``), instead of a hop through the preparer
        thread and back.
        """
        for step in self.steps[conn.steps_done :]:
            if getattr(step, "waits_in_place", False):
                continue
            handover = getattr(step, "handover", None)
            if handover is None or not handover():
                return False
        conn.handed_over = True
        return True

    def _prepared(self, conn: Connection) -> None:
        """Preparer callback: every step is done; ``process_request`` hands it on."""
        try:
            self.server.process_request(conn.request, conn.client_address)
        except Exception:
            self.failed(conn)
            self.end(conn)

    def _preparation_failed(self, conn: Connection, exc: BaseException) -> None:
        """Preparer callback: a step failed or timed out; end the connection with its outcome."""
        try:
            raise exc  # handle_error reads the exception being handled, as in the stdlib
        except BaseException:
            self.failed(conn)
        finally:
            self.end(conn)

    def close_idle(self, *, finish_started: bool = False) -> list[Connection]:
        """Stop the pre-handler stage; return what it (and the strategy) held unstarted.

        With ``finish_started`` (a drain) only the connections waiting for a
        client's first bytes are returned: those have sent nothing. One in
        the middle of another step (a TLS handshake: the client connected to
        talk TLS, and may be halfway through) is a client like any in flight:
        it goes to the strategy, whose worker finishes its steps (each within
        its own timeout, all within the drain's deadline) and serves it.
        """
        leftovers = self._preparer.stop() if self._preparer is not None else []
        idle = []
        for conn in leftovers:
            if finish_started and not self._waits_for_first_bytes(conn):
                try:
                    self.submit(conn)  # draining: taken past the strategy's queue
                except Exception:
                    self.failed(conn)
                    self.end(conn)
            else:
                idle.append(conn)
        return idle + self.strategy.close_idle()

    def _waits_for_first_bytes(self, conn: Connection) -> bool:
        """Whether ``conn`` is at a step that waits for the client's first bytes."""
        steps = self.steps
        if conn.steps_done >= len(steps):
            return False
        return bool(getattr(steps[conn.steps_done], "waiting_is_idle", False))

    def close(self, *, wait: bool) -> None:
        """``server_close``: end what the pre-handler stage holds, release the strategy.

        With ``wait`` the strategy's connections are waited for (the stdlib's
        ``block_on_close``), except when a drain already aborted them and gave
        up: waiting then could last forever, so it is logged and skipped.
        """
        for conn in self.close_idle():
            conn.end_as(CLOSED_IDLE)
            self.end(conn)
        timeout = None
        if wait and self.abandoned:
            server_logger.warning(
                "%s: not waiting for %d handler(s) still running after the drain's deadline",
                describe_address(self.server.server_address),
                self.abandoned,
            )
            timeout = 0.0
        self.strategy.close(wait=wait, timeout=timeout)

    @property
    def preparing(self) -> int:
        """Connections in the pre-handler stage now."""
        return self._preparer.preparing if self._preparer is not None else 0

    # -- serving and ending -------------------------------------------------------

    def connection_for(self, request: Request, client_address: Address) -> Connection:
        """The connection of ``request`` (a fresh, untracked one if a caller made it up)."""
        conn = self.tracker.find(request)
        return conn if conn is not None else Connection(request, client_address)

    def serve(self, conn: Connection) -> None:
        """Serve ``conn`` to its end on this thread: the body of every worker. Never raises.

        In order: pre-handler steps still due here (inline, fork; and those a
        drain took from the pre-handler stage unfinished), the pending
        ``verify_request``, the handler (``finish_request``); an exception goes
        to ``handle_error``; then :meth:`end`.
        """
        server = self.server
        try:
            if conn.verify_pending:
                if conn.steps_done < len(self.steps):
                    prepare_in_place(conn, self.steps)
                conn.verify_pending = False
                if not server.verify_request(conn.request, conn.client_address):
                    conn.end_as(DENIED)
                    return
            server.finish_request(conn.request, conn.client_address)
        except Exception:
            self.failed(conn)
        finally:
            self.end(conn)

    def failed(self, conn: Connection) -> None:
        """The exception being handled ended ``conn``: decide its outcome, call ``handle_error``.

        A pre-handler step's refusal (``Refused``: access control, an untrusted
        proxy) is a refusal, not a failure: the connection is refused as a
        limit would refuse it. A peer that closed before sending anything
        (``NothingSent``: a health check) ends quietly as ``empty``. A step's
        failure is also counted by its kind (``stats().step_failures``).
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, Refused):
            self.tracker.unadmit(conn, exc.reason)
            conn.end_as(refused(exc.reason))
            self.refuse(conn, exc.reason)
            return
        if isinstance(exc, NothingSent) or (conn.probe and isinstance(exc, CLIENT_GONE_ERRORS)):
            # A health check's connect and close (or reset): nothing to report.
            conn.end_as(EMPTY)
            return
        kind = getattr(exc, "kind", None) if isinstance(exc, StepFailed | StepTimedOut) else None
        if kind is not None:
            self.tracker.count(STEP_FAILURE + kind)
        conn.end_as(classify(exc).outcome)
        self.server.handle_error(conn.request, conn.client_address)

    def end(self, conn: Connection) -> None:
        """Shut ``conn`` down and release its place, whatever happens (idempotent release)."""
        outcome = conn.outcome
        if outcome is not None and outcome.startswith(REFUSED):
            return  # refused on the way: reject_request ended it already
        try:
            self.server.shutdown_request(conn.request)
        finally:
            self.tracker.release(conn)

    def ending(self, request: Request, counts: tuple[int, int] | None = None) -> None:
        """A connection is ending, its socket still open: its histograms and access line.

        Called by ``shutdown_request`` when the server logs access or records
        metrics; the byte counts are read from the kernel once for both.
        """
        conn = self.tracker.find(request)
        if conn is None:
            return  # refused connections were never admitted: refuse() logs them
        recorder = self.recorder
        if recorder is not None:
            if counts is None:
                counts = tcp_byte_counts(request, reset=conn.outcome == RESET)
            recorder.record_values(time.monotonic() - conn.admitted_at, counts)
        if self.server.access_log:
            log_access(request, conn.client_address, conn.outcome or OK, conn.age, counts)

    # -- state -------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.lifecycle.state

    def stats_extra(self) -> dict[str, Any]:
        """The strategy's worker counts plus the pre-handler stage, for ``stats()``."""
        counts = self.strategy.counts()
        return {
            "workers": counts.workers,
            "busy_workers": counts.busy,
            "pending": counts.pending,
            "preparing": self.preparing,
        }
