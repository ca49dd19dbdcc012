"""The stdlib's server classes, rebuilt: same hooks, same order, prompt shutdown.

``BaseServer`` owns the serving loop every sockserve server uses:
``serve_forever`` waits on the listener and on a :class:`~sockserve.core.wakeup.Waker`,
calls ``_handle_request_noblock`` when the listener is readable, and
``service_actions`` once per wake-up. What happens to a connection from there
is the :mod:`connection pipeline <sockserve.engine.pipeline>`'s, which calls
every hook a subclass written for the stdlib can override with the stdlib's
arguments in the stdlib's order: ``get_request`` -> ``verify_request`` ->
``process_request`` -> (``finish_request`` -> handler) -> ``shutdown_request``
-> ``close_request``, with ``handle_error`` for exceptions. This module keeps
the hooks and the socket-specific parts; see ``docs/pipeline.md`` for the map.

What differs, on purpose, where no caller can tell:

* ``shutdown()`` wakes the loop at once instead of waiting for the next poll,
  and returns instead of deadlocking when called from the serving thread.
* ``handle_error`` logs through ``logging`` (``sockserve.server``), with the
  client address; a client that disconnected is one line, not a traceback.
* Failed accepts are sorted (see :mod:`sockserve.core.accept`); resource
  shortages pause the listener instead of spinning.
* ``TCPServer.request_queue_size`` defaults to ``socket.SOMAXCONN``, not 5.
* A Unix socket server removes the socket file it created when closed.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, Unpack

from sockserve._types import Address, HandlerFactory, Request
from sockserve.core.fdlimit import ensure_descriptors
from sockserve.core.unixfiles import (
    SocketFileRecord,
    bind_socket_file,
    group_id,
    is_socket_path,
    record_socket_file,
    remove_socket_file,
    user_id,
)
from sockserve.core.wakeup import Waker
from sockserve.engine.connection import (
    PEER_ERROR,
    RESET,
    TIMEOUT,
    Connection,
    ConnectionInfo,
    classify,
)
from sockserve.engine.drain import DrainReport
from sockserve.engine.drain import drain as run_drain
from sockserve.engine.lifecycle import State
from sockserve.engine.pipeline import STEP_FAILURE, ConnectionPipeline
from sockserve.engine.prepare import Step
from sockserve.observability.logs import describe_address, server_logger
from sockserve.observability.stats import ServerStats
from sockserve.options import ServerOptions, apply_options, family_default
from sockserve.security import steps_for
from sockserve.security.tls import TLSInfo, send_close_notify
from sockserve.strategies.base import Strategy
from sockserve.strategies.inline import InlineStrategy

__all__ = [
    "BaseServer",
    "TCPServer",
    "UDPServer",
    "UnixDatagramServer",
    "UnixStreamServer",
]

# poll() has no descriptor-number ceiling, unlike select(); two descriptors do
# not need epoll's setup cost.
_Selector: type[selectors.BaseSelector] = getattr(
    selectors, "PollSelector", selectors.SelectSelector
)
#: The stdlib's name for it, re-exported as ``sockserve._ServerSelector``.
_ServerSelector = _Selector


def _new_selector() -> selectors.BaseSelector:
    """A selector for the serving loop, ``handle_request`` or a drain.

    Tests patch its class under either name and expect the loop to use it:
    ``sockserve.servers._Selector`` (ours) or ``socketserver._ServerSelector``
    (the stdlib's, which is ``sockserve._ServerSelector`` once sockserve
    stands in for ``socketserver``). A patched stdlib name wins.
    """
    chosen = getattr(sys.modules.get("sockserve"), "_ServerSelector", _ServerSelector)
    if chosen is _ServerSelector:
        chosen = _Selector
    return chosen()


class BaseServer:
    """The template every server follows; it knows nothing of sockets but the one it serves.

    Subclasses provide ``get_request``, ``fileno`` and usually a ``socket``
    attribute; they override hooks exactly as with the stdlib. The path a
    connection takes from ``get_request`` to ``shutdown_request`` is the
    :class:`~sockserve.engine.pipeline.ConnectionPipeline`'s; where it is
    served is the strategy's, chosen by the concurrency mix-in
    (``_make_strategy``). The production options (see :mod:`sockserve.options`)
    are class attributes and keyword-only constructor arguments; all are off
    here, as in the stdlib.
    """

    #: Seconds ``handle_request`` waits before calling ``handle_timeout`` (None: forever).
    timeout: float | None = None
    #: Concurrent connections for the whole server; more are refused. None: no limit.
    max_connections: int | None = family_default("max_connections", "stdlib")
    #: Concurrent connections from one IP address; more are refused. None: no limit.
    max_connections_per_ip: int | None = family_default("max_connections_per_ip", "stdlib")
    #: Seconds a read or write may wait without any byte moving before the
    #: handler gets a ``TimeoutError``. None: forever.
    idle_timeout: float | None = family_default("idle_timeout", "stdlib")
    #: Longest line (bytes, terminator included) a handler's size-less
    #: ``rfile.readline()`` returns before raising ``LineTooLong``. None: unbounded.
    max_line: int | None = family_default("max_line", "stdlib")
    #: Log one line per connection (peer, outcome, duration, bytes) to "sockserve.access".
    access_log: bool = family_default("access_log", "stdlib")
    #: Set TCP_NODELAY on accepted TCP connections. A handler that writes a
    #: response in several pieces (http.server: headers, then body) otherwise
    #: waits on Nagle's algorithm and the client's delayed ACK, ~40 ms a request.
    #: Unix sockets are left alone.
    tcp_nodelay: bool = family_default("tcp_nodelay", "stdlib")
    #: TCP keepalive on accepted connections: None/False off, True on (the
    #: kernel's idle time), or seconds of silence before the first probe; with
    #: the probes' interval and count. Set on the listener, which accepted
    #: connections copy: no system call per connection.
    tcp_keepalive: bool | float | None = family_default("tcp_keepalive", "stdlib")
    tcp_keepalive_interval: float | None = family_default("tcp_keepalive_interval", "stdlib")
    tcp_keepalive_count: int | None = family_default("tcp_keepalive_count", "stdlib")
    #: Seconds sent data may stay unacknowledged before the kernel drops the
    #: connection (TCP_USER_TIMEOUT): a peer that vanished mid-write. None: the kernel's.
    tcp_user_timeout: float | None = family_default("tcp_user_timeout", "stdlib")
    #: Clients served / refused by address (networks; uid:N, gid:N on Unix
    #: sockets). Empty ``allow``: everyone; ``deny`` wins. See sockserve.security.access.
    allow: Sequence[str] = family_default("allow", "stdlib")
    deny: Sequence[str] = family_default("deny", "stdlib")
    #: Read a PROXY protocol header from trusted peers: "off", "v1", "v2" or "auto".
    proxy_protocol: str = family_default("proxy_protocol", "stdlib")
    #: The networks allowed to send a PROXY header (required from them).
    proxy_trusted: Sequence[str] = family_default("proxy_trusted", "stdlib")
    #: A connection from another peer: "serve" it as itself, or "refuse" it.
    proxy_untrusted: str = family_default("proxy_untrusted", "stdlib")
    #: Seconds a trusted peer may take to send its header.
    proxy_header_timeout: float = family_default("proxy_header_timeout", "stdlib")
    #: Serve TLS with this context (None: plain connections).
    ssl_context: ssl.SSLContext | None = family_default("ssl_context", "stdlib")
    #: Seconds a TLS handshake may take.
    handshake_timeout: float = family_default("handshake_timeout", "stdlib")
    #: The most of a drain's timeout kept, at its end, for aborted handlers to
    #: return (a quarter of the timeout when that is less).
    drain_abort_grace: float = 2.0

    #: Whether the strategy runs AsyncStreamRequestHandler coroutines.
    _serves_async_handlers = False
    #: Why ``serve_forever`` cannot follow ``server_close()`` (strategies whose
    #: close stops their workers say so); None: it can, as in the stdlib.
    _closed_for_good: str | None = None

    def __init__(
        self,
        server_address: Address,
        RequestHandlerClass: HandlerFactory,
        **options: Unpack[ServerOptions],
    ) -> None:
        self.server_address: Address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        if getattr(RequestHandlerClass, "_is_async_handler", False) != self._serves_async_handlers:
            raise TypeError(_handler_mismatch(type(self), RequestHandlerClass))
        apply_options(self, dict(options))
        self.__is_shut_down = threading.Event()
        self.__shutdown_request = False
        self.__serving_thread: int | None = None
        self.__waker: SupportsWake | None = None
        self.__waker_lock = threading.Lock()
        self._watching_listener = False
        self._turn_callbacks: list[Callable[[], None]] = []
        self._pipeline = ConnectionPipeline(self)
        #: Set when a drain begins; long-running handlers may check it and wrap up.
        self.draining = self._pipeline.lifecycle.draining

    # -- what the concurrency mix-ins choose -------------------------------

    def _make_strategy(self, pipeline: ConnectionPipeline) -> Strategy:
        """The strategy serving admitted connections: here, one at a time, inline."""
        return InlineStrategy(pipeline.serve, pipeline.tracker)

    def _pre_handler_steps(self) -> list[Step]:
        """The pre-handler steps the server's options ask for (none by default).

        PROXY header, access control, TLS handshake: see :mod:`sockserve.security`.
        Strategies may add their own (the pool's ``dispatch="readable"``).
        """
        return steps_for(self)

    def _blocks_on_close(self) -> bool:
        """Whether ``server_close`` waits for connections being served (``block_on_close``)."""
        return False

    def _raw_socket(self, conn: Connection) -> socket.socket:
        """The socket the pre-handler steps read and wait on: here, the request itself."""
        sock: socket.socket = conn.request
        return sock

    # -- the serving loop -------------------------------------------------

    def server_activate(self) -> None:
        """Called by the constructor to start listening. May be overridden."""

    def serve_forever(self, poll_interval: float | None = 0.5) -> None:
        """Handle requests until ``shutdown()``.

        ``shutdown()`` wakes the loop immediately; ``poll_interval`` only sets
        how often ``service_actions`` runs when nothing else happens.
        """
        self.__is_shut_down.clear()
        self.__serving_thread = threading.get_ident()
        try:
            self._check_descriptors()
            self._pipeline.lifecycle.move(State.SERVING)
            self._run_serving_loop(poll_interval)
        finally:
            self._set_waker(None)
            self._watching_listener = False
            self.__shutdown_request = False
            self.__serving_thread = None
            self._pipeline.lifecycle.loop_stopped()
            self.__is_shut_down.set()

    def _check_descriptors(self) -> None:
        """Raise the open-files limit to what ``max_connections`` needs, or warn once.

        At the start of serving, not at construction: a server built and not
        served (a test, a parent that forks before serving) changes nothing
        process-wide, and ``max_connections`` set after construction counts.
        See :mod:`sockserve.core.fdlimit`.
        """
        limit = self.max_connections
        if limit is None or getattr(self, "socket_type", socket.SOCK_STREAM) != socket.SOCK_STREAM:
            return
        per_connection = getattr(self._pipeline.strategy, "descriptors_per_connection", 1)
        ensure_descriptors(
            limit,
            per_connection,
            where=describe_address(self.server_address),
            logger=server_logger,
        )

    def _run_serving_loop(self, poll_interval: float | None) -> None:
        """Wait on the listener and a waker until a stop is requested (the sync strategies).

        The async strategy runs its event loop here instead, which accepts by itself.
        """
        # The waker is made inside serve_forever's try: if this fails (no
        # descriptors left), its finally still sets __is_shut_down, so a
        # shutdown() elsewhere cannot hang.
        with Waker() as waker, _new_selector() as selector:
            self._set_waker(waker)
            selector.register(waker, selectors.EVENT_READ)
            while not self._stop_requested():
                timeout = self.__watch_listener(selector, poll_interval)
                ready = selector.select(timeout)
                if self._stop_requested():
                    break
                for key, _events in ready:
                    if key.fileobj is waker:
                        waker.drain()
                    else:
                        self._handle_request_noblock()
                self._run_turn()

    def __watch_listener(
        self, selector: selectors.BaseSelector, poll_interval: float | None
    ) -> float | None:
        """(Un)register the listener as back-off and back-pressure allow; return the wait."""
        timeout = poll_interval
        want, rest = self._pipeline.accepting_now()
        if rest is not None:
            timeout = rest if timeout is None else min(timeout, rest)
        if want != self._watching_listener:
            if want:
                selector.register(self, selectors.EVENT_READ)
            else:
                selector.unregister(self)
            self._watching_listener = want
        return timeout

    def _run_turn(self) -> None:
        """What runs once per turn of the serving loop: ``service_actions``, then callbacks."""
        self._pipeline.error_log.flush()
        self.service_actions()
        for callback in self._turn_callbacks:
            callback()

    def _set_waker(self, waker: SupportsWake | None) -> None:
        """Install (or remove) what ``wake_loop`` pokes: the running loop's waker."""
        with self.__waker_lock:
            self.__waker = waker

    def _stop_pending(self) -> bool:
        """Whether the serving loop has been asked to stop, or the server to drain or close.

        Strategies that may block in the loop (a forking server at
        ``max_children``) check it so a shutdown or drain is not held up.
        """
        return self.__shutdown_request or self._pipeline.state in (
            State.DRAINING,
            State.CLOSED,
        )

    def _stop_requested(self) -> bool:
        """Whether ``shutdown()`` asked the serving loop to stop (or code in the wild
        set ``_BaseServer__shutdown_request``, the stdlib's private flag)."""
        # A method, not an inline attribute test: another thread sets the flag
        # while we wait, which a type checker's narrowing cannot know.
        return self.__shutdown_request

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it has returned.

        Called from the thread running ``serve_forever`` (a handler of a
        non-threading server), it only requests the stop: waiting there would
        wait forever, which is what the stdlib does.
        """
        self.__shutdown_request = True
        self.wake_loop()
        if self.__serving_thread == threading.get_ident():
            return
        self.__is_shut_down.wait()

    def wake_loop(self) -> None:
        """Make the serving loop re-check its state now (from any thread).

        Call it when something an accept gate depends on has changed.
        """
        with self.__waker_lock:
            if self.__waker is not None:
                self.__waker.wake()

    def add_accept_gate(self, gate: Callable[[], bool]) -> None:
        """Accept new connections only while ``gate()`` (and every other gate) returns True.

        Checked once per loop turn, before the loop waits; while a gate is
        closed the listener is not read and the kernel backlog holds clients.
        Call :meth:`wake_loop` when a gate opens again. The runner closes one
        when a worker has served its ``--max-requests``.
        """
        self._pipeline.add_gate(gate)

    def add_turn_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once per turn of ``serve_forever``, after ``service_actions``.

        For code that runs servers it did not write (the runner's heartbeat):
        unlike overriding ``service_actions``, it leaves the server's own hook alone.
        """
        self._turn_callbacks.append(callback)

    def service_actions(self) -> None:
        """Called once per loop iteration of ``serve_forever``. May be overridden."""

    # -- one request ------------------------------------------------------

    def handle_request(self) -> None:
        """Wait for and handle one request, or call ``handle_timeout``.

        The wait is bounded by the smaller of the socket's timeout and
        ``self.timeout`` (either may be None).
        """
        timeout: float | None = self._listener_timeout()
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with _new_selector() as selector:
            selector.register(self, selectors.EVENT_READ)
            while True:
                if selector.select(timeout):
                    return self._handle_request_noblock()
                if deadline is not None:
                    timeout = deadline - time.monotonic()
                    if timeout < 0:
                        return self.handle_timeout()

    def _listener_timeout(self) -> float | None:
        """The listening socket's own timeout (socket servers have one)."""
        return None

    def _listening_socket(self) -> socket.socket | None:
        """The stream listener, if any (a forked child closes its copy; options go on it)."""
        return None

    def _is_tcp(self) -> bool:
        """Whether connections are TCP (TCP_NODELAY applies; Unix sockets have no Nagle)."""
        return False

    def _handle_request_noblock(self) -> None:
        """Accept one request (the listener is readable) and send it down the pipeline."""
        self._pipeline.accept_one()

    def reject_request(self, request: Request, client_address: Address, reason: str) -> None:
        """End a request that a limit refused: ``reason`` names the limit.

        The default shuts the request down. Override to tell the client first
        (write "busy" to ``request``), then call ``super().reject_request(...)``.
        """
        self.shutdown_request(request)

    def handle_timeout(self) -> None:
        """Called when ``handle_request`` times out. May be overridden."""

    def get_request(self) -> tuple[Request, Address]:
        """Return ``(request, client_address)``; stream and datagram servers define it."""
        raise NotImplementedError

    def verify_request(self, request: Request, client_address: Address) -> bool:
        """Return False to refuse the request (it is then shut down). May be overridden.

        Runs on the serving thread before ``process_request``, as in the
        stdlib; for a server with pre-handler steps (``dispatch="readable"``,
        later TLS and PROXY) it runs after them, on the worker that then runs
        the handler, so it may block without holding up the accept loop.
        """
        return True

    def process_request(self, request: Request, client_address: Address) -> None:
        """Handle the request in this thread; the concurrency mix-ins override this."""
        if self._pipeline.steps:
            # Pre-handler steps (and verify_request after them) are due here first.
            pipeline = self._pipeline
            pipeline.serve(pipeline.connection_for(request, client_address))
            return
        conn = self._pipeline.tracker.find(request)
        self.finish_request(request, client_address)
        # The handler may have replaced the socket (start_tls wraps it, and the
        # old object is then detached): end the one the connection holds now.
        self.shutdown_request(conn.request if conn is not None else request)

    def finish_request(self, request: Request, client_address: Address) -> None:
        """Run the request handler: instantiating it runs setup/handle/finish."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Request) -> None:
        """End the request; stream servers shut the socket down first."""
        if self.access_log or self._pipeline.recorder is not None:
            self._pipeline.ending(request)
        self.close_request(request)

    def close_request(self, request: Request) -> None:
        """Release the request's resources. May be overridden."""

    def server_close(self) -> None:
        """Release the server's resources. May be overridden (call super).

        Waits for the connections being served when the strategy blocks on
        close (``block_on_close``), except those a drain already gave up on:
        those are logged and left.
        """
        self._pipeline.lifecycle.move(State.CLOSED)
        self._pipeline.close(wait=self._blocks_on_close())

    def handle_error(self, request: Request, client_address: Address) -> None:
        """Log the exception being handled, with the client's address.

        A client that reset, went away or timed out gets one INFO line; a client
        that broke a limit or the protocol (``PeerError``) one WARNING line; any
        other exception an ERROR line with its traceback. Lines of one kind (the
        same outcome, exception type -- or a pre-handler step's failure kind,
        ``tls:not-tls`` -- and place) are rate-limited, so a flood
        of failing requests costs a bounded number of lines: the first of a
        kind is logged whole, the next ones are counted and reported as "N
        more like this suppressed". Override to change.
        """
        exc = sys.exc_info()[1]
        failure = classify(exc)
        peer = describe_address(client_address)
        extra = {"client_address": client_address}
        # A pre-handler step's failure is of its own kind (tls:not-tls and
        # tls:certificate are both StepFailed): one line per kind, wherever raised.
        kind = getattr(exc, "kind", None)
        key: Hashable = (
            (failure.outcome, kind)
            if isinstance(kind, str)
            else (failure.outcome, type(exc).__name__, _where(exc))
        )
        limiter = self._pipeline.error_log
        if failure.outcome == TIMEOUT:
            # socket.timeout's own text is "timed out": say it once.
            why = str(exc).removeprefix("timed out").lstrip(": ")
            limiter.log(
                logging.INFO, key, "client %s timed out%s", peer, f": {why}" if why else "",
                extra=extra,
            )  # fmt: skip
        elif failure.outcome == RESET:
            limiter.log(logging.INFO, key, "client %s disconnected: %s", peer, exc, extra=extra)
        elif failure.outcome == PEER_ERROR:
            limiter.log(logging.WARNING, key, "client %s: %s", peer, exc, extra=extra)
        else:
            limiter.log(
                logging.ERROR,
                key,
                "Exception occurred during processing of request from %s",
                peer,
                exc_info=exc,
                extra=extra,
            )

    def fileno(self) -> int:
        """The descriptor ``serve_forever`` waits on; socket servers define it."""
        raise NotImplementedError

    # -- production additions ----------------------------------------------

    @property
    def state(self) -> State:
        """Where the server is in its life: idle, serving, draining or closed."""
        return self._pipeline.state

    def stats(self) -> ServerStats:
        """A snapshot of the server's counters (cheap: no I/O, one short lock)."""
        pipeline = self._pipeline
        accepted, active, completed, rejected, events = pipeline.tracker.snapshot()
        counts = pipeline.strategy.counts()
        return ServerStats(
            state=pipeline.state.value,
            accepting=self._watching_listener,
            accepted=accepted,
            active=active,
            completed=completed,
            pending=counts.pending,
            rejected=rejected,
            timed_out=events.get("timed_out", 0),
            handler_errors=events.get("handler_errors", 0),
            peer_errors=events.get("peer_errors", 0),
            disconnects=events.get("disconnects", 0),
            aborted=events.get("aborted", 0),
            denied=events.get("denied", 0),
            closed_idle=events.get("closed_idle", 0),
            slow_cuts=events.get("slow_cuts", 0),
            preparing=pipeline.preparing,
            step_failures={
                name[len(STEP_FAILURE) :]: count
                for name, count in events.items()
                if name.startswith(STEP_FAILURE)
            },
            accept_errors={kind.value: n for kind, n in pipeline.throttle.counts.items()},
            workers=counts.workers,
            busy_workers=counts.busy,
        )

    def connection_info(self, request: Request) -> ConnectionInfo | None:
        """The real client, the proxy, the TLS session of a connection in flight.

        Call it from a handler with ``self.request``; None for a request that
        is not (or no longer) in flight.
        """
        conn = self._pipeline.tracker.find(request)
        if conn is None:
            return None
        return ConnectionInfo(
            client_address=conn.client_address,
            peer=conn.peer,
            proxy=conn.proxy,
            tls=self._tls_info(conn),
            admitted_at=conn.admitted_at,
        )

    def _tls_info(self, conn: Connection) -> Any:
        """The TLS session of ``conn`` (None for plain connections)."""
        if isinstance(conn.request, ssl.SSLSocket):
            return TLSInfo.of(conn.request)
        return None

    @property
    def connections_admitted(self) -> int:
        """Connections (datagrams) admitted since the server was made: one integer read."""
        return self._pipeline.tracker.accepted

    def wait_for(self, predicate: Callable[[ServerStats], bool], timeout: float) -> bool:
        """Block until ``predicate(self.stats())`` holds or ``timeout`` passes; return it.

        Re-checked whenever a connection is admitted, refused or ends (and at
        least every 50 ms, for worker states that change in between), so tests
        and health checks wait for a state instead of sleeping.
        """
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.stats()):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._pipeline.tracker.wait_for_change(min(remaining, 0.05))

    def drain(self, timeout: float = 30.0) -> DrainReport:
        """Stop accepting at once, let requests in flight finish, abort the rest.

        New connections are refused from the first moment (the listener is
        closed, so the kernel no longer queues them). Requests in flight get
        until the deadline to finish; ``self.draining`` is set so handlers can
        end long sessions politely. What is left is aborted (sockets shut down,
        so blocked reads return; tasks cancelled; children killed) early enough
        that the drain returns by ``timeout`` seconds (see
        ``drain_abort_grace``), and the report says how many finished, how many
        were forced and how many handlers had still not returned.
        ``force_drain()`` from another thread cuts the wait short. Call
        ``server_close()`` afterwards (it does not wait for handlers the drain
        gave up on). Must not be called from a handler running on the serving
        thread.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise ValueError(f"timeout must be a number >= 0, got {timeout!r}")
        if self.__serving_thread == threading.get_ident():
            raise RuntimeError("drain() called from the serving thread would wait for itself")
        return run_drain(self, self._pipeline, float(timeout))

    def _stop_serving_for_drain(self) -> None:
        """Drain, step 1: stop the loop, serve what the kernel queued, stop listening."""
        if self.__serving_thread is not None:
            self.shutdown()
        self._accept_backlog()
        self._stop_listening()

    def force_drain(self) -> None:
        """Make a drain in progress (or the next one) abort what is left now."""
        self._pipeline.lifecycle.force.set()
        self._pipeline.tracker.poke()

    def _accept_backlog(self) -> None:
        """Drain: take what the kernel already queued, so those clients are served, not reset.

        Bounded by the backlog's size; stops at the first poll that finds
        nothing more (another worker sharing the listener may take some).
        """

    def _stop_listening(self) -> None:
        """Refuse new connections from now on (drain). Socket servers close the listener."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server_close()


class SupportsWake(Protocol):
    """What ``wake_loop()`` pokes: the socket-pair waker, or an event loop's."""

    def wake(self) -> None: ...


# A concurrency mix-in is combined with a server class at run time; for the
# type checker it is a BaseServer subclass, so its calls into the server are
# checked instead of silenced.
if TYPE_CHECKING:
    MixInBase = BaseServer
else:
    MixInBase = object


def _where(exc: BaseException | None) -> str | None:
    """``file:line`` where ``exc`` was raised (the last frame of its traceback)."""
    tb = exc.__traceback__ if exc is not None else None
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def _handler_mismatch(server_class: type[BaseServer], handler: object) -> str:
    """The message for a handler the server's strategy cannot run."""
    name = getattr(handler, "__name__", handler)
    if server_class._serves_async_handlers:
        return (
            f"{server_class.__name__} serves AsyncStreamRequestHandler subclasses; {name!r} "
            "is not one (use a thread pool server such as ThreadPoolTCPServer for it)"
        )
    return (
        f"{server_class.__name__} cannot run the async handler {name}: "
        "serve it with AsyncTCPServer or AsyncUnixStreamServer"
    )


class TCPServer(BaseServer):
    """A stream-socket server (TCP by default; the Unix stream server reuses it)."""

    address_family: int = socket.AF_INET
    socket_type: int = socket.SOCK_STREAM
    #: listen() backlog. The stdlib's 5 drops clients under any burst; the
    #: kernel caps this at net.core.somaxconn anyway.
    request_queue_size: int = socket.SOMAXCONN
    allow_reuse_address: bool = False
    allow_reuse_port: bool = False

    def __init__(
        self,
        server_address: Address,
        RequestHandlerClass: HandlerFactory,
        bind_and_activate: bool = True,
        **options: Unpack[ServerOptions],
    ) -> None:
        # Called explicitly, like the stdlib, so a mix-in placed between us and
        # BaseServer is not handed constructor arguments it does not expect.
        BaseServer.__init__(self, server_address, RequestHandlerClass, **options)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        """Apply the reuse options, bind, and record the address really bound."""
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            self.socket.bind(self.server_address)
        except OSError as exc:
            exc.add_note(f"sockserve: could not bind {describe_address(self.server_address)}")
            raise
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        self.socket.listen(self.request_queue_size)

    def server_close(self) -> None:
        if self.socket_type == socket.SOCK_DGRAM:
            # Datagram handlers reply through the server's one socket: let the
            # ones in flight finish before it closes, or their replies are lost.
            self._pipeline.close(wait=True)
        self.socket.close()
        super().server_close()

    def _listener_timeout(self) -> float | None:
        return self.socket.gettimeout()

    def _listening_socket(self) -> socket.socket | None:
        if self.socket_type != socket.SOCK_STREAM:
            return None
        # None while the constructor has not made it yet (the pipeline asks early).
        listener: socket.socket | None = vars(self).get("socket")
        return listener

    def _is_tcp(self) -> bool:
        # address_family, not socket.family: a plain attribute, where the
        # socket's property builds an enum on every call.
        return self.address_family != socket.AF_UNIX and self.socket_type == socket.SOCK_STREAM

    def _accept_backlog(self) -> None:
        try:
            self.socket.setblocking(False)  # a race lost to another worker is EAGAIN
            with _new_selector() as selector:
                selector.register(self, selectors.EVENT_READ)
                for _ in range(max(self.request_queue_size, 1)):
                    if not selector.select(0):
                        return
                    self._handle_request_noblock()
        except (OSError, ValueError):
            return  # the listener is closed already: nothing is queued on it

    def _stop_listening(self) -> None:
        # Closing the listener makes the kernel refuse new connections (what
        # was queued has just been accepted) instead of holding them.
        self.socket.close()

    def fileno(self) -> int:
        return self.socket.fileno()

    def get_request(self) -> tuple[Any, Address]:
        if isinstance(self.socket, ssl.SSLSocket):
            # The classic TLS recipe (a wrapped listener): accept the raw
            # connection; the handshake is a pre-handler step, not accept()'s.
            return socket.socket.accept(self.socket)
        return self.socket.accept()

    def shutdown_request(self, request: Any) -> None:
        if self.access_log or self._pipeline.recorder is not None:
            self._pipeline.ending(request)
        if isinstance(request, ssl.SSLSocket):
            send_close_notify(request)
        # Send our FIN before closing so the peer sees a clean end of stream
        # even if another process (a forked child) still holds the socket.
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone already: nothing left to tell it
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        request.close()


class UDPServer(TCPServer):
    """A datagram server: each packet is one request ``(data, socket)``."""

    allow_reuse_address = False
    allow_reuse_port = False
    socket_type = socket.SOCK_DGRAM
    #: Longer datagrams are truncated, as in the stdlib.
    max_packet_size: int = 8192

    def get_request(self) -> tuple[Any, Address]:
        data, client_addr = self.socket.recvfrom(self.max_packet_size)
        return (data, self.socket), client_addr

    def server_activate(self) -> None:
        """Datagram sockets do not listen."""

    def _stop_listening(self) -> None:
        """Keep the socket: handlers in flight send their replies through it."""

    def shutdown_request(self, request: Any) -> None:
        if self.access_log or self._pipeline.recorder is not None:
            self._pipeline.ending(request)
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """The socket is shared by every request: nothing to close."""


class _OwnsSocketFile(TCPServer):
    """Creates the Unix socket file with the mode and owner asked for; removes it when closed.

    Without ``socket_mode``, ``socket_owner`` or ``socket_group`` the file
    is bound as by the stdlib (the umask's mode). With them it is bound in a
    private directory and linked into place (see
    :mod:`sockserve.core.unixfiles`): ``server_address`` is then the path
    asked for, while ``socket.getsockname()`` names the private one.
    """

    #: Permission bits of the socket file (0o660: owner and group may connect). None: umask's.
    socket_mode: int | None = family_default("socket_mode", "stdlib")
    #: Owner and group of the socket file: a name or a number. None: this process's.
    socket_owner: int | str | None = family_default("socket_owner", "stdlib")
    socket_group: int | str | None = family_default("socket_group", "stdlib")
    _socket_file: SocketFileRecord | None = None

    def server_bind(self) -> None:
        address = self.server_address
        custom = (self.socket_mode, self.socket_owner, self.socket_group) != (None, None, None)
        if not custom or not is_socket_path(address):
            super().server_bind()
            self._socket_file = record_socket_file(self.server_address)
            return
        try:
            self._socket_file = bind_socket_file(
                self.socket,
                address,
                mode=self.socket_mode,
                uid=user_id(self.socket_owner),
                gid=group_id(self.socket_group),
            )
        except OSError as exc:
            exc.add_note(f"sockserve: could not bind {describe_address(address)}")
            raise
        self.server_address = os.fsdecode(address)  # as getsockname() reports a path

    def server_close(self) -> None:
        super().server_close()
        remove_socket_file(self._socket_file)
        self._socket_file = None


class UnixStreamServer(_OwnsSocketFile):
    """A stream server on a Unix socket path; removes its socket file when closed."""

    address_family = socket.AF_UNIX


class UnixDatagramServer(_OwnsSocketFile, UDPServer):
    """A datagram server on a Unix socket path; removes its socket file when closed."""

    address_family = socket.AF_UNIX
