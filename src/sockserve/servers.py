"""The stdlib's server classes, rebuilt: same hooks, same order, prompt shutdown.

``BaseServer`` owns the one accept path every sockserve server uses:
``serve_forever`` waits on the listener and on a :class:`~sockserve.core.wakeup.Waker`,
calls ``_handle_request_noblock`` when the listener is readable, and
``service_actions`` once per wake-up. Everything a subclass written for the
stdlib can override is called with the stdlib's arguments in the stdlib's
order: ``get_request`` -> ``verify_request`` -> ``process_request`` ->
(``finish_request`` -> handler) -> ``shutdown_request`` -> ``close_request``,
with ``handle_error`` for exceptions.

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
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, Unpack

from sockserve._types import Address, HandlerFactory, Request
from sockserve.core.accept import AcceptThrottle
from sockserve.core.connopts import ConnectionOptions
from sockserve.core.lifecycle import DrainReport, Lifecycle, State
from sockserve.core.tracker import ConnectionTracker
from sockserve.core.unixfiles import SocketFileRecord, record_socket_file, remove_socket_file
from sockserve.core.wakeup import Waker
from sockserve.errors import PeerError
from sockserve.observability.access import log_access
from sockserve.observability.logs import RateLimitedLog, describe_address, server_logger
from sockserve.observability.stats import ServerStats
from sockserve.options import ServerOptions, apply_options

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


#: Exceptions that mean the peer went away: an event to note, not a bug to trace.
CLIENT_GONE_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class BaseServer:
    """The template every server follows; it knows nothing of sockets but the one it serves.

    Subclasses provide ``get_request``, ``fileno`` and usually a ``socket``
    attribute; they override hooks exactly as with the stdlib. The production
    options (see :mod:`sockserve.options`) are class attributes and keyword-only
    constructor arguments; all are off here, as in the stdlib.
    """

    #: Seconds ``handle_request`` waits before calling ``handle_timeout`` (None: forever).
    timeout: float | None = None
    #: Concurrent connections for the whole server; more are refused. None: no limit.
    max_connections: int | None = None
    #: Concurrent connections from one IP address; more are refused. None: no limit.
    max_connections_per_ip: int | None = None
    #: Seconds a connection may stay silent, or a send stay blocked, before the
    #: handler gets a ``TimeoutError``. None: forever.
    idle_timeout: float | None = None
    #: Longest line (bytes, terminator included) a handler's size-less
    #: ``rfile.readline()`` returns before raising ``LineTooLong``. None: unbounded.
    max_line: int | None = None
    #: Log one line per connection (peer, outcome, duration, bytes) to "sockserve.access".
    access_log: bool = False
    #: Set TCP_NODELAY on accepted TCP connections. A handler that writes a
    #: response in several pieces (http.server: headers, then body) otherwise
    #: waits on Nagle's algorithm and the client's delayed ACK, ~40 ms a request.
    #: Unix sockets are left alone.
    tcp_nodelay: bool = False
    #: Seconds a drain waits, after aborting what was left at its deadline,
    #: for the aborted handlers to return.
    drain_abort_grace: float = 2.0

    #: True for strategies whose ``process_request`` returns while the request
    #: is still being handled elsewhere (a thread, a pool, a child process);
    #: they report the request's end themselves.
    _dispatches_in_background = False
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
        if getattr(RequestHandlerClass, "_is_async_handler", False) and not getattr(
            self, "_serves_async_handlers", False
        ):
            raise TypeError(
                f"{type(self).__name__} cannot run the async handler "
                f"{getattr(RequestHandlerClass, '__name__', RequestHandlerClass)}: "
                "serve it with AsyncTCPServer or AsyncUnixStreamServer"
            )
        apply_options(self, dict(options))
        self.__is_shut_down = threading.Event()
        self.__shutdown_request = False
        self.__serving_thread: int | None = None
        self.__waker: Waker | None = None
        self.__waker_lock = threading.Lock()
        self.__resume_accepting_at = 0.0
        self._accept_throttle = AcceptThrottle()
        self._watching_listener = False
        self._lifecycle = Lifecycle(final_close=self._closed_for_good)
        #: Set when a drain begins; long-running handlers may check it and wrap up.
        self.draining = self._lifecycle.draining
        self._tracker = ConnectionTracker(
            max_connections=self.max_connections,
            max_connections_per_ip=self.max_connections_per_ip,
        )
        self._refusals = RateLimitedLog(server_logger, 10.0)
        self._connection_options = ConnectionOptions()
        #: id(request) -> how it failed, for the access log (filled only when logging).
        self._outcomes: dict[int, str] = {}
        self._setup_strategy()

    def _setup_strategy(self) -> None:
        """Create what the concurrency strategy needs (pools, ...). Called by ``__init__``."""

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
        waker: Waker | None = None
        try:
            self._lifecycle.move(State.SERVING)
            # Inside the try: if this fails (no descriptors left), the finally
            # still sets __is_shut_down, so a shutdown() elsewhere cannot hang.
            waker = Waker()
            with self.__waker_lock:
                self.__waker = waker
            with _new_selector() as selector:
                selector.register(waker, selectors.EVENT_READ)
                while not self.__stop_requested():
                    timeout = self.__watch_listener(selector, poll_interval)
                    ready = selector.select(timeout)
                    if self.__stop_requested():
                        break
                    for key, _events in ready:
                        if key.fileobj is waker:
                            waker.drain()
                        else:
                            self._handle_request_noblock()
                    self.service_actions()
        finally:
            with self.__waker_lock:
                self.__waker = None
            if waker is not None:
                waker.close()
            self._watching_listener = False
            self.__shutdown_request = False
            self.__serving_thread = None
            self._lifecycle.loop_stopped()
            self.__is_shut_down.set()

    def __watch_listener(
        self, selector: selectors.BaseSelector, poll_interval: float | None
    ) -> float | None:
        """(Un)register the listener as back-off and back-pressure allow; return the wait."""
        timeout = poll_interval
        want = self._ready_to_accept()
        if self.__resume_accepting_at:
            rest = self.__resume_accepting_at - time.monotonic()
            if rest > 0:
                want = False
                timeout = rest if timeout is None else min(timeout, rest)
            else:
                self.__resume_accepting_at = 0.0
        if want != self._watching_listener:
            if want:
                selector.register(self, selectors.EVENT_READ)
            else:
                selector.unregister(self)
            self._watching_listener = want
        return timeout

    def _stop_pending(self) -> bool:
        """Whether the serving loop has been asked to stop, or the server to drain or close.

        Strategies that may block in the loop (a forking server at
        ``max_children``) check it so a shutdown or drain is not held up.
        """
        return self.__shutdown_request or self._lifecycle.state in (
            State.DRAINING,
            State.CLOSED,
        )

    def __stop_requested(self) -> bool:
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
        self._wake()
        if self.__serving_thread == threading.get_ident():
            return
        self.__is_shut_down.wait()

    def _wake(self) -> None:
        """Interrupt the serving loop's wait (when capacity returns, or to stop)."""
        with self.__waker_lock:
            if self.__waker is not None:
                self.__waker.wake()

    def _ready_to_accept(self) -> bool:
        """Whether the loop should watch the listener now (back-pressure hook).

        A server that cannot take another request returns False and calls
        ``_wake()`` when it can again; the kernel backlog holds new clients
        meanwhile. The base server can always accept.
        """
        return True

    def service_actions(self) -> None:
        """Called once per loop iteration of ``serve_forever``. May be overridden."""

    # -- one request ------------------------------------------------------

    def handle_request(self) -> None:
        """Wait for and handle one request, or call ``handle_timeout``.

        The wait is bounded by the smaller of the socket's timeout and
        ``self.timeout`` (either may be None).
        """
        timeout: float | None = self.socket.gettimeout()  # type: ignore[attr-defined]
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

    def _handle_request_noblock(self) -> None:
        """Accept one request (the listener is readable) and dispatch it."""
        try:
            request, client_address = self.get_request()
        except OSError as exc:
            self._accept_failed(exc)
            return
        self._accept_throttle.succeeded()
        refusal = self._tracker.admit(request, client_address)
        if refusal is not None:
            self._refuse(request, client_address, refusal)
            return
        handed_off = False
        try:
            # Unlike the stdlib, an exception from verify_request (or from
            # setting the idle timeout) goes to handle_error: it ends this
            # request, not the serving loop.
            # address_family, not request.family: a plain attribute, where the
            # socket's property builds an enum on every call.
            nodelay = self.tcp_nodelay and getattr(self, "address_family", None) != socket.AF_UNIX
            if self.idle_timeout is not None or nodelay:
                self._connection_options.apply(
                    getattr(self, "socket", None), request, self.idle_timeout, nodelay
                )
            if self.verify_request(request, client_address):
                self.process_request(request, client_address)
                handed_off = self._dispatches_in_background
            else:
                if self.access_log:
                    self._outcomes[id(request)] = "denied"
                self.shutdown_request(request)
        except Exception:
            self._request_failed(request, client_address)
            self.shutdown_request(request)
        except BaseException:
            self.shutdown_request(request)
            raise
        finally:
            if not handed_off:
                self._tracker.release(request)

    def _run_request(self, request: Request, client_address: Address) -> None:
        """Handle a request to its end on the current thread (the body of a worker).

        Never raises an ``Exception``: a handler's error goes to ``handle_error``
        and the request is shut down and released whatever happened.
        """
        try:
            self.finish_request(request, client_address)
        except Exception:
            self._request_failed(request, client_address)
        finally:
            self._end_request(request)

    def _end_request(self, request: Request) -> None:
        """Shut an admitted request down and release its place, whatever happens."""
        try:
            self.shutdown_request(request)
        finally:
            self._tracker.release(request)

    def _request_failed(self, request: Request, client_address: Address) -> None:
        """Count the exception being handled by its kind, then call ``handle_error``."""
        exc = sys.exc_info()[1]
        if isinstance(exc, TimeoutError):
            event, outcome = "timed_out", "timeout"
        elif isinstance(exc, PeerError):
            event, outcome = "peer_errors", "peer-error"
        elif isinstance(exc, CLIENT_GONE_ERRORS):
            event, outcome = "disconnects", "reset"
        else:
            event, outcome = "handler_errors", "error"
        self._tracker.count(event)
        if self.access_log:
            self._outcomes[id(request)] = outcome
        self.handle_error(request, client_address)

    def _log_access(self, request: Request) -> None:
        """Write the access-log line of a request that is ending (before its socket closes)."""
        outcome = self._outcomes.pop(id(request), "ok")
        found = self._tracker.lookup(request)
        if found is not None:  # refused requests were never admitted: _refuse logs them
            address, started = found
            log_access(request, address, outcome, time.monotonic() - started)

    def _refuse(self, request: Request, client_address: Address, reason: str) -> None:
        """Log (rate-limited) and reject a request a limit did not admit."""
        self._refusals.log(
            logging.WARNING,
            reason,
            "refused connection from %s: %s reached",
            describe_address(client_address),
            reason,
        )
        if self.access_log:
            log_access(request, client_address, f"refused:{reason}", None)
        try:
            self.reject_request(request, client_address, reason)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def reject_request(self, request: Request, client_address: Address, reason: str) -> None:
        """End a request that a limit refused: ``reason`` names the limit.

        The default shuts the request down. Override to tell the client first
        (write "busy" to ``request``), then call ``super().reject_request(...)``.
        """
        self.shutdown_request(request)

    def _accept_failed(self, exc: OSError) -> None:
        """Log a failed ``get_request`` by its class and rest the listener if needed."""
        pause = self._accept_throttle.failed(exc, describe_address(self.server_address))
        if pause:
            self.__resume_accepting_at = time.monotonic() + pause

    def handle_timeout(self) -> None:
        """Called when ``handle_request`` times out. May be overridden."""

    def get_request(self) -> tuple[Request, Address]:
        """Return ``(request, client_address)``; stream and datagram servers define it."""
        raise NotImplementedError

    def verify_request(self, request: Request, client_address: Address) -> bool:
        """Return False to refuse the request (it is then shut down). May be overridden."""
        return True

    def process_request(self, request: Request, client_address: Address) -> None:
        """Handle the request in this thread; the concurrency mix-ins override this."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def finish_request(self, request: Request, client_address: Address) -> None:
        """Run the request handler: instantiating it runs setup/handle/finish."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Request) -> None:
        """End the request; stream servers shut the socket down first."""
        if self.access_log:
            self._log_access(request)
        self.close_request(request)

    def close_request(self, request: Request) -> None:
        """Release the request's resources. May be overridden."""

    def server_close(self) -> None:
        """Release the server's resources. May be overridden (call super)."""
        self._lifecycle.move(State.CLOSED)

    def handle_error(self, request: Request, client_address: Address) -> None:
        """Log the exception being handled, with the client's address.

        A client that reset, went away or timed out gets one INFO line; a client
        that broke a limit or the protocol (``PeerError``) one WARNING line; any
        other exception an ERROR line with its traceback. Override to change.
        """
        exc = sys.exc_info()[1]
        peer = describe_address(client_address)
        extra = {"client_address": client_address}
        if isinstance(exc, CLIENT_GONE_ERRORS):
            server_logger.info("client %s disconnected: %s", peer, exc, extra=extra)
        elif isinstance(exc, TimeoutError):
            server_logger.info("client %s timed out: %s", peer, exc, extra=extra)
        elif isinstance(exc, PeerError):
            server_logger.warning("client %s: %s", peer, exc, extra=extra)
        else:
            server_logger.error(
                "Exception occurred during processing of request from %s",
                peer,
                exc_info=exc is not None,
                extra=extra,
            )

    def fileno(self) -> int:
        """The descriptor ``serve_forever`` waits on; socket servers define it."""
        raise NotImplementedError

    # -- production additions ----------------------------------------------

    @property
    def state(self) -> State:
        """Where the server is in its life: idle, serving, draining or closed."""
        return self._lifecycle.state

    def stats(self) -> ServerStats:
        """A snapshot of the server's counters (cheap: no I/O, one short lock)."""
        accepted, active, completed, rejected, events = self._tracker.snapshot()
        workers, busy, pending = self._worker_counts()
        return ServerStats(
            state=self._lifecycle.state.value,
            accepting=self._watching_listener,
            accepted=accepted,
            active=active,
            completed=completed,
            pending=pending,
            rejected=rejected,
            timed_out=events.get("timed_out", 0),
            handler_errors=events.get("handler_errors", 0),
            peer_errors=events.get("peer_errors", 0),
            disconnects=events.get("disconnects", 0),
            accept_errors={kind.value: n for kind, n in self._accept_throttle.counts.items()},
            workers=workers,
            busy_workers=busy,
        )

    def _worker_counts(self) -> tuple[int, int, int]:
        """(workers, busy workers, requests waiting for one); strategies with workers override."""
        active = self._tracker.in_flight
        return active, active, 0

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
            self._tracker.wait_for_change(min(remaining, 0.05))

    def drain(self, timeout: float = 30.0) -> DrainReport:
        """Stop accepting at once, let requests in flight finish, abort the rest.

        New connections are refused from the first moment (the listener is
        closed, so the kernel no longer queues them). Requests in flight get
        until ``timeout`` seconds to finish; ``self.draining`` is set so
        handlers can end long sessions politely. What is left at the deadline
        is aborted (sockets shut down, so blocked reads return; children
        killed), and the report says how many finished and how many were
        forced. ``force_drain()`` from another thread cuts the wait short.
        Call ``server_close()`` afterwards. Must not be called from a handler
        running on the serving thread.
        """
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        if self.__serving_thread == threading.get_ident():
            raise RuntimeError("drain() called from the serving thread would wait for itself")
        started = time.monotonic()
        self._lifecycle.move(State.DRAINING)
        if self.__serving_thread is not None:
            self.shutdown()
        self._accept_backlog()
        self._stop_listening()
        # Nothing new is admitted from here: every request in flight now ends
        # either by itself (finished) or at the deadline (forced).
        tracker = self._tracker
        completed_before = tracker.completed
        in_flight = tracker.in_flight
        idle_closed = self._close_idle_requests()
        self.draining.set()
        self._wait_for_requests(started + timeout, stop_on_force=True)
        forced = tracker.in_flight
        finished = tracker.completed - completed_before - idle_closed
        still_running = 0
        if forced:
            self._abort_requests()
            self._wait_for_requests(time.monotonic() + self.drain_abort_grace)
            still_running = tracker.in_flight
        report = DrainReport(
            in_flight=in_flight - idle_closed,
            finished=finished,
            forced=forced,
            still_running=still_running,
            idle_closed=idle_closed,
            elapsed=time.monotonic() - started,
        )
        server_logger.info("%s: %s", describe_address(self.server_address), report)
        return report

    def force_drain(self) -> None:
        """Make a drain in progress (or the next one) abort what is left now."""
        self._lifecycle.force.set()
        self._tracker.poke()

    def _accept_backlog(self) -> None:
        """Drain: take what the kernel already queued, so those clients are served, not reset.

        Bounded by the backlog's size; stops at the first poll that finds
        nothing more (another worker sharing the listener may take some).
        """

    def _stop_listening(self) -> None:
        """Refuse new connections from now on (drain). Socket servers close the listener."""

    def _close_idle_requests(self) -> int:
        """Close connections that have not started (drain); return how many."""
        return 0

    def _wait_for_requests(self, deadline: float, *, stop_on_force: bool = False) -> bool:
        """Wait until no request is in flight or the deadline; return whether none is."""
        force = self._lifecycle.force
        tracker = self._tracker

        def settled() -> bool:
            return tracker.in_flight == 0 or (stop_on_force and force.is_set())

        tracker.wait_until(settled, deadline)
        return tracker.in_flight == 0

    def _abort_requests(self) -> None:
        """Abort every request in flight: shut its socket down so blocked I/O returns."""
        for request, _address in self._tracker.in_flight_requests():
            if isinstance(request, socket.socket):
                try:
                    request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # closed or reset meanwhile: it is ending anyway

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server_close()


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
        self.socket.close()
        super().server_close()

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
        return self.socket.accept()

    def shutdown_request(self, request: Any) -> None:
        if self.access_log:
            self._log_access(request)
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
        if self.access_log:
            self._log_access(request)
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """The socket is shared by every request: nothing to close."""


class _OwnsSocketFile(TCPServer):
    """Removes, on ``server_close``, the Unix socket file that ``server_bind`` created."""

    _socket_file: SocketFileRecord | None = None

    def server_bind(self) -> None:
        super().server_bind()
        self._socket_file = record_socket_file(self.server_address)

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
