"""An event loop that accepts, admits and serves: ``AsyncMixIn``'s strategy.

The async strategy runs the whole connection pipeline on one event loop, on
the thread that calls ``serve_forever``:

* **accepting**: the loop watches the listening socket itself and accepts in
  batches through the pipeline (``get_request``, the limits,
  ``verify_request``, ``process_request``), with the accept back-off every
  sockserve server has: out of descriptors, clients stay in the kernel
  backlog until descriptors free, none is accepted and then dropped. (This is
  why sockserve does not let the loop's ``create_server`` accept: libuv's
  answer to EMFILE, which uvloop inherits, accepts and closes the whole
  backlog, then stops the server.) Accepting is one callback among the
  loop's others, at most ``MAX_ACCEPT`` connections a turn: when the loop is
  behind, accepting is behind with it, and the kernel backlog holds the rest.
  A connection costs the loop a few turns to start and end, so what is held
  at once stays a few batches however big a burst is (5,000 connect-and-reset
  clients in one second: a peak of about 250 descriptors on asyncio, 200 on
  uvloop; ``tests/hostile/test_async_faults.py``).
* **serving**: each connection is a real ``asyncio.Task`` (so
  ``current_task()``, ``asyncio.timeout()``, ``TaskGroup``, cancellation and
  per-connection ``contextvars`` work), talking through a lean
  :class:`~sockserve.strategies.aiostream.Stream`; one descriptor per
  connection (the transport owns the accepted socket).
* **idle timeouts**: one sweep per loop, not a timer per connection.

The loop runs only while someone drives it: ``serve_forever`` until
``shutdown()``; ``drain()`` and ``server_close()`` while they wait for
connections to end; ``handle_request()`` until its connection is served.
Between those, connections wait, as an inline server's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from sockserve.engine.connection import Connection
from sockserve.engine.tracker import ConnectionTracker
from sockserve.security.tls import loop_handshake_failure
from sockserve.strategies.aiostream import ConnectionSocket, IdleSweep, Stream
from sockserve.strategies.base import OneTaskPerConnection
from sockserve.strategies.eventloop import loop_factory

if TYPE_CHECKING:
    from sockserve.servers import BaseServer

__all__ = ["AsyncStrategy", "start_eagerly"]

_log = logging.getLogger("sockserve.server")

ServeCoroutine = Callable[[Connection], Coroutine[Any, Any, None]]

#: Connections accepted per wake-up of the listener, so that one busy
#: listener cannot starve the connections already being served.
MAX_ACCEPT = 64
#: Seconds tasks cancelled when the loop closes get to finish their clean-up.
CANCEL_GRACE = 1.0
#: The name of every connection's task.
TASK_NAME = "sockserve-connection"


def start_eagerly(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> asyncio.Task[None] | None:
    """Run ``coro`` now, up to its first real wait; only then make it a task.

    Returns None when it finished without waiting (no task was needed). It
    runs in a copy of the current context, as a task would; until its first
    wait ``asyncio.current_task()`` is None (Python 3.12's eager tasks, used
    there instead, do not have that limit).
    """
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_resume(coro, waiting_on, context), context=context)


async def _resume(
    coro: Coroutine[Any, Any, None], waiting_on: Any, context: contextvars.Context
) -> None:
    """Go on with a coroutine ``start_eagerly`` began: wait for what it waits on, resume it."""
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)  # a bare yield: it only gave the loop a turn
            else:
                # The coroutine's await marked the future "blocking" for the task
                # that would take it; there was none, so take it back before
                # awaiting the same future here (a task does this reset itself).
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except BaseException as exc:
            # The wait failed, or this task was cancelled: the coroutine learns it
            # where it waits, as it would under a task of its own.
            try:
                waiting_on = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return


def _quiet_handshake_failures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: a failed TLS handshake is the peer's, already counted.

    The loop's own TLS reports a handshake that failed to the exception
    handler (an ERROR line with a traceback) as well as to the coroutine that
    waited for it, which counts it and logs it once per kind. Everything else
    goes to the default handler.
    """
    exc = context.get("exception")
    message = str(context.get("message", ""))
    if "handshake" in message.lower() and isinstance(exc, ssl.SSLError | OSError):
        return
    loop.default_exception_handler(context)


class _LoopWaker:
    """``wake_loop()`` for an event loop: run ``check`` on the loop, from any thread."""

    __slots__ = ("_check", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, check: Callable[[], None]) -> None:
        self._loop = loop
        self._check = check

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing to wake
            self._loop.call_soon_threadsafe(self._check)


class AsyncStrategy(OneTaskPerConnection):
    """Owns the event loop, accepts on it and serves each connection as a task.

    Room, counts and idle closing are a one-task-per-connection strategy's
    (bounded by ``max_connections``); aborting and waiting go through the loop.
    """

    background = True
    #: Pre-handler steps run in the connection's task, as coroutines.
    prepares_in_place = True
    #: The loop's sockets are non-blocking: the kernel's timeouts would do nothing.
    blocking_sockets = False
    guards_slow_clients = False

    def __init__(
        self,
        serve: ServeCoroutine,
        tracker: ConnectionTracker,
        *,
        kind: str,
        idle_timeout: float | None,
        max_line: int | None,
        datagram: bool = False,
    ) -> None:
        self._serve = serve
        #: Datagram handlers run eagerly (see ``submit``); stream ones as tasks.
        self._datagram = datagram
        self._tracker = tracker
        self.kind, self._new_loop = loop_factory(kind)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sweep = IdleSweep(idle_timeout, self._streams)
        self._max_line = max_line
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The strategy's event loop, made on first use."""
        if self._loop is None:
            if self._closed:
                raise RuntimeError("the server is closed: its event loop is gone")
            loop = self._new_loop()
            loop.set_exception_handler(_quiet_handshake_failures)
            if sys.version_info >= (3, 12):
                # Run each connection's task at once, up to its first wait,
                # instead of one loop iteration later.
                loop.set_task_factory(asyncio.eager_task_factory)
            self._loop = loop
            self.sweep.start(loop)
        return self._loop

    # -- the serving loop -----------------------------------------------------------

    def run_serving_loop(self, server: BaseServer, poll_interval: float | None) -> None:
        """``serve_forever``: accept and serve on the event loop until a stop is requested."""
        loop = self.loop
        pipeline = server._pipeline
        fd = server.fileno()
        # Accepts (and datagrams) are taken in batches, until EAGAIN.
        os.set_blocking(fd, False)
        watching = False
        resume: asyncio.TimerHandle | None = None
        turn_handle: asyncio.TimerHandle | None = None

        def check() -> None:
            """Stop, or (un)watch the listener as back-pressure and back-off allow."""
            nonlocal watching, resume
            if server._stop_requested():
                loop.stop()
                return
            want, rest = pipeline.accepting_now()
            if rest is not None and resume is None:
                resume = loop.call_later(rest, resumed)
            if want != watching:
                if want:
                    loop.add_reader(fd, accept)
                else:
                    loop.remove_reader(fd)
                watching = want
            server._watching_listener = want

        def resumed() -> None:
            nonlocal resume
            resume = None
            check()

        def accept() -> None:
            for _ in range(MAX_ACCEPT):
                if not pipeline.may_accept() or not pipeline.accept_one():
                    break
            server._run_turn()
            check()

        def turn() -> None:
            nonlocal turn_handle
            server._run_turn()
            check()
            if poll_interval is not None:
                turn_handle = loop.call_later(poll_interval, turn)

        server._set_waker(_LoopWaker(loop, check))
        try:
            check()
            if poll_interval is not None:
                turn_handle = loop.call_later(poll_interval, turn)
            if not server._stop_requested():
                loop.run_forever()
        finally:
            if watching:
                loop.remove_reader(fd)
            for handle in (resume, turn_handle):
                if handle is not None:
                    handle.cancel()

    # -- connections ---------------------------------------------------------------------

    def submit(self, conn: Connection, *, force: bool = False, later: bool = False) -> bool:
        """Start the connection's task (on the loop's thread, or while the loop is idle).

        A datagram's handler is usually done before it waits for anything (a
        reply is a ``sendto``), so it runs eagerly: a task is made only if it
        does wait. On Python 3.12+ the loop's eager task factory does exactly
        that for every task; before, :func:`start_eagerly` does it for
        datagrams (a stream connection always waits, for its first bytes).
        """
        loop = self.loop
        if self._datagram and sys.version_info < (3, 12) and loop.is_running():
            start_eagerly(loop, self._serve(conn))
        else:
            # asyncio keeps the task (asyncio.all_tasks): no record of our own,
            # which would cost a set entry and a done callback per connection;
            # one name for all, where asyncio would make a string per task.
            loop.create_task(self._serve(conn), name=TASK_NAME)
        return True

    async def open_stream(
        self,
        conn: Connection,
        *,
        record_bytes: bool,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
    ) -> ConnectionSocket:
        """Give ``conn``'s accepted socket to a transport, behind a :class:`Stream`.

        The request is normally the :class:`ConnectionSocket` view already
        (``AsyncMixIn.get_request`` makes it); a subclass whose ``get_request``
        returns a plain socket has it wrapped here.
        """
        view = conn.request
        if not isinstance(view, ConnectionSocket):
            view = ConnectionSocket(view)
            self._tracker.rekey(conn, view)
        stream = Stream(self.sweep, max_line=self._max_line, record_bytes=record_bytes)
        loop = asyncio.get_running_loop()
        if tls is None:
            await loop.connect_accepted_socket(lambda: stream, view._sock)
        else:
            # The loop does the handshake (uvloop's in C), under handshake_timeout;
            # a failure is the peer's, sorted into the same kinds as elsewhere.
            try:
                await loop.connect_accepted_socket(
                    lambda: stream,
                    view._sock,
                    ssl=tls,
                    ssl_handshake_timeout=handshake_timeout,
                )
            except (ssl.SSLError, OSError) as exc:
                raise loop_handshake_failure(exc, handshake_timeout) from None
        view.stream = stream
        return view

    def _streams(self) -> list[Stream]:
        """The streams of the connections in flight (for the idle sweep)."""
        return [
            conn.request.stream
            for conn in self._tracker.connections()
            if isinstance(conn.request, ConnectionSocket) and conn.request.stream is not None
        ]

    def abort(self, conns: list[Connection]) -> list[Connection]:
        """Drain deadline: abort the connections and cancel their handlers (on the loop)."""

        def abort_all() -> None:
            for conn in conns:
                request = conn.request
                if isinstance(request, ConnectionSocket) and request.stream is not None:
                    request.stream.abort()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        self._on_loop(abort_all)
        return []

    def _on_loop(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if loop.is_running():
            loop.call_soon_threadsafe(callback)
        else:
            callback()

    def wait_idle(self, deadline: float | None, give_up: threading.Event | None = None) -> bool:
        """Run the loop until no connection is in flight, the deadline, or ``give_up``."""
        tracker = self._tracker

        def settled() -> bool:
            return tracker.in_flight == 0 or (give_up is not None and give_up.is_set())

        self._run_until(settled, deadline)
        return tracker.in_flight == 0

    def _run_until(self, settled: Callable[[], bool], deadline: float | None) -> None:
        loop = self._loop
        if settled() or loop is None or loop.is_closed():
            return
        if loop.is_running():
            # serve_forever runs it on another thread: just wait for the state.
            self._tracker.wait_until(settled, deadline)
            return

        async def until_settled() -> None:
            while not settled():
                if deadline is not None and time.monotonic() >= deadline:
                    return
                await asyncio.sleep(0.01)

        loop.run_until_complete(until_settled())

    def close(self, *, wait: bool, timeout: float | None) -> None:
        """Wait for the connections (``block_on_close``), cancel the rest, close the loop."""
        loop = self._loop
        self._closed = True
        if loop is None or loop.is_closed():
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            return  # serve_forever still runs it elsewhere: it closes nothing of ours
        if wait:
            self.wait_idle(None if timeout is None else time.monotonic() + timeout)
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers, timeout=CANCEL_GRACE))
        stuck = [task for task in leftovers if not task.done()]
        self.sweep.stop()
        if stuck:
            # Tasks that ignore their cancellation: let them run out on a daemon
            # thread, so their connections are still ended properly when they do.
            _log.warning("%d task(s) ignored their cancellation; not waiting for them", len(stuck))
            threading.Thread(
                target=self._finish_stuck, args=(loop, stuck), name="sockserve-loop", daemon=True
            ).start()
            return
        self._close_loop(loop)

    def _finish_stuck(
        self, loop: asyncio.AbstractEventLoop, stuck: list[asyncio.Task[None]]
    ) -> None:
        loop.run_until_complete(asyncio.wait(stuck))
        self._close_loop(loop)

    def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
