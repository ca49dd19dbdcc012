"""The pre-handler stage: I/O a connection needs before its handler, off the accept loop.

Some work has to happen between ``accept()`` and the handler: waiting for a
client's first bytes, reading a PROXY header, a TLS handshake. Each may wait
on the network for as long as the client likes, so none of it may run on the
accept loop (one silent client would stop the server) nor on a worker thread
(a few hundred silent clients would hold every worker). Here each such piece
is a :class:`Step`: a non-blocking state machine that either finishes, or says
which readiness it waits for (readable or writable), with a deadline of its
own.

Two drivers run the steps:

* :class:`Preparer`, for the thread and pool strategies: one selector thread
  that holds every connection being prepared and costs them a descriptor
  each, not a thread. A connection whose steps are done is handed to the
  strategy; one whose step fails or misses its deadline is ended with the
  matching outcome. Steps marked cheap are first tried right on the accepting
  thread (one non-blocking system call), so a client whose bytes are already
  there never makes the hop to the selector thread at all.
* :func:`prepare_in_place`, for the inline and forking strategies, which serve
  where they prepare (the serving thread, the forked child): the same steps,
  waited for with the same deadlines.

``verify_request`` is not a step: users do DNS or database look-ups in it, so
it must never run on the selector thread. A prepared connection carries
``verify_pending`` and the worker (or task) calls it before the handler.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from sockserve.core.wakeup import Waker
from sockserve.engine.connection import Connection, StepTimedOut

__all__ = [
    "DONE",
    "READ",
    "WRITE",
    "Preparer",
    "Step",
    "WaitForData",
    "NOT_CHEAP",
    "advance_cheap",
    "prepare_async",
    "prepare_in_place",
]

_log = logging.getLogger("sockserve.server")

#: What :meth:`Step.advance` returns: done, or the readiness it waits for.
DONE = 0
READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE

_raw_recv = socket.socket.recv
_PEEK_NOW = socket.MSG_PEEK | socket.MSG_DONTWAIT

#: poll() cannot wait longer than 2**31 ms; longer waits just wake up and re-check.
_MAX_WAIT = 3600.0


class Step(Protocol):
    """One non-blocking piece of work a connection needs before its handler."""

    #: Names the step in logs and timeout errors ("first bytes", "TLS handshake").
    name: str
    #: The short word its failures are counted under (``tls`` -> ``tls:timeout``).
    kind: str
    #: Seconds the step may take from its start (None: no limit of its own).
    timeout: float | None
    #: Cheap enough (one non-blocking system call, no crypto) to try on the accept loop.
    cheap: bool
    # Optional: ``waits_in_place = True`` says that when the step must wait, it
    # may wait on the thread that will serve the connection instead of the
    # preparer's (it waits only on peers that send at once, or never waits),
    # provided every later step says so too. ``prefers_worker = True`` (a first
    # step that reads the socket) says it should then run there from the start
    # when a worker is free, rather than try on the accepting thread first.

    def advance(self, conn: Connection) -> int:
        """Make what progress is possible without blocking.

        Returns ``DONE`` or the readiness to wait for (``READ``/``WRITE``).
        ``READ`` means "until *new* bytes arrive": a step that has looked at
        the bytes waiting in the socket (a peek) must take them out before it
        asks to wait, or the level-triggered selector reports the socket ready
        again at once and the step spins. Raises for a failure: a
        ``PeerError`` for what the peer sent, an ``OSError`` for a reset,
        ``TimeoutError`` never (the driver times out).
        """
        ...


class WaitForData:
    """Wait until the client has sent something (or closed): ``dispatch="readable"``.

    A client that connects and says nothing then costs a descriptor, not a
    worker. End of stream counts as data: the handler reads it and ends.
    First bytes with no complete line among them (fewer than ``FULL``) mark
    the connection ``partial``: under pressure it waits behind complete
    requests (see :mod:`sockserve.security.slowclients`).

    ``handover`` (``dispatch="auto"``): a predicate that says a worker is
    free. While it holds, a connection does not wait for its first bytes at
    all, so a server that speaks first (a banner) keeps working without
    declaring it; the drivers that hold connections ask it again every
    ``RECHECK`` seconds and hand silent connections over, oldest first, as
    workers free up. Only a busy server makes new connections earn a worker.
    """

    #: This many bytes count as a request under way even without a newline.
    FULL = 1024
    #: Seconds between two looks at ``handover`` while connections are held.
    RECHECK = 0.1

    name = "first bytes"
    kind = "first-bytes"
    cheap = True
    #: A connection waiting here has sent nothing: a drain closes it (``closed-idle``).
    #: (Steps without this attribute hold clients that are talking: a drain lets them finish.)
    waiting_is_idle = True

    def __init__(self, timeout: float | None, handover: Callable[[], bool] | None = None) -> None:
        self.timeout = timeout
        self.handover = handover

    def advance(self, conn: Connection) -> int:
        request = conn.request
        if isinstance(request, ssl.SSLSocket) and request.pending():
            return DONE  # decrypted bytes wait in the TLS layer, not in the socket
        if conn.handed_over or (self.handover is not None and self.handover()):
            # A worker is free (or took it already): it takes the connection
            # whatever it sent, so there is nothing to look at (and no system
            # call to pay for).
            return DONE
        try:
            # The C method itself: a socket with a kernel idle timeout turns
            # EAGAIN into TimeoutError in its own recv (core/timeouts.py).
            first = _raw_recv(request, self.FULL, _PEEK_NOW)
        except BlockingIOError:
            return READ
        conn.partial = 0 < len(first) < self.FULL and b"\n" not in first
        return DONE


def _step_timed_out(step: Step) -> TimeoutError:
    return StepTimedOut(step.kind, step.name, step.timeout)


#: What :func:`advance_cheap` returns when the next step is not cheap.
NOT_CHEAP = -1


def advance_cheap(conn: Connection, steps: Sequence[Step]) -> int:
    """Run the cheap steps that can finish without waiting, on the calling thread.

    Returns ``DONE`` when every step is done, ``READ``/``WRITE`` when a cheap
    step must wait, ``NOT_CHEAP`` when the next step must not run here (a
    handshake on the accept loop). Raises what a step raised.
    """
    while conn.steps_done < len(steps):
        step = steps[conn.steps_done]
        if not step.cheap:
            return NOT_CHEAP
        want = step.advance(conn)
        if want:
            return want
        conn.steps_done += 1
    return DONE


def prepare_in_place(conn: Connection, steps: Sequence[Step]) -> None:
    """Run the steps not done yet on this thread, each up to its own deadline.

    Raises ``TimeoutError`` when a step misses its deadline, or what the step raised.
    """
    while conn.steps_done < len(steps):
        step = steps[conn.steps_done]
        deadline = None if step.timeout is None else time.monotonic() + step.timeout
        want = step.advance(conn)
        if not want:
            # Done at the first try (the bytes were there): no selector to make.
            conn.steps_done += 1
            continue
        with selectors.DefaultSelector() as selector:
            registered = 0
            while want:
                if want != registered:
                    if registered:
                        selector.modify(conn.request, want)
                    else:
                        selector.register(conn.request, want)
                    registered = want
                wait = None if deadline is None else deadline - time.monotonic()
                if (wait is not None and wait <= 0) or not selector.select(
                    None if wait is None else min(wait, _MAX_WAIT)
                ):
                    raise _step_timed_out(step)
                want = step.advance(conn)
        conn.steps_done += 1


async def prepare_async(conn: Connection, sock: socket.socket, steps: Sequence[Step]) -> None:
    """Run ``steps`` from a coroutine on the running event loop (the async strategy).

    The same steps as the other drivers, on the accepted socket before a
    transport takes it: readiness is awaited through the loop's own
    ``add_reader``/``add_writer``, each step under its own timeout.
    """
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    while conn.steps_done < len(steps):
        step = steps[conn.steps_done]
        deadline = None if step.timeout is None else loop.time() + step.timeout
        while want := step.advance(conn):
            ready: asyncio.Future[None] = loop.create_future()
            watch, unwatch = (
                (loop.add_reader, loop.remove_reader)
                if want == READ
                else (loop.add_writer, loop.remove_writer)
            )
            watch(fd, _set_once, ready)
            timer = None
            if deadline is not None:
                timer = loop.call_at(deadline, _time_out, ready, step)
            try:
                await ready
            finally:
                unwatch(fd)
                if timer is not None:
                    timer.cancel()
        conn.steps_done += 1


def _set_once(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _time_out(ready: asyncio.Future[None], step: Step) -> None:
    if not ready.done():
        ready.set_exception(_step_timed_out(step))


class _Entry:
    """A connection in the preparer: which step it is at, and that step's deadline."""

    __slots__ = ("conn", "deadline", "fd", "steps", "want")

    def __init__(self, conn: Connection, steps: Sequence[Step], want: int) -> None:
        self.conn = conn
        self.steps = steps
        self.deadline: float | None = None
        #: The readiness the current step waits for (0: it has not been tried here).
        self.want = want
        self.fd = -1


class Preparer:
    """One selector thread that runs the steps of many connections (see the module doc).

    ``on_ready(conn)`` receives a connection whose steps are all done;
    ``on_failed(conn, exc)`` one whose step raised or timed out (``exc`` is
    then a ``TimeoutError``). Both run on the preparer's thread (or on the
    accepting thread, for connections prepared at once) and must not block.
    """

    def __init__(
        self,
        *,
        on_ready: Callable[[Connection], None],
        on_failed: Callable[[Connection, BaseException], None],
        name: str = "sockserve-prepare",
    ) -> None:
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._name = name
        self._lock = threading.Lock()
        self._inbox: deque[_Entry] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._waker = Waker()
        # Made here, not when the thread starts, so the descriptors a server
        # holds do not change the first time a connection has to wait.
        self._selector = selectors.DefaultSelector()
        self._leftovers: list[Connection] = []
        self._order = itertools.count()
        self._held = 0
        #: Held entries whose step may end early (``WaitForData.handover``), oldest first.
        self._rechecks: dict[int, _Entry] = {}
        self._next_recheck = 0.0

    def prepare(self, conn: Connection, steps: Sequence[Step], want: int = 0) -> bool:
        """Take ``conn`` over from its next step of ``steps``; False if stopping.

        ``want``: what its current step already said it waits for (the caller
        tried the cheap steps, see :func:`advance_cheap`); 0 to try it here.
        When False, the caller ends the connection.
        """
        entry = _Entry(conn, steps, want)
        with self._lock:
            if self._stopping:
                return False
            self._inbox.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._waker.wake()
        return True

    def stop(self) -> list[Connection]:
        """Stop preparing; return the connections still being prepared (the caller ends them)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            self._waker.wake()
            thread.join()
        self._waker.close()
        self._selector.close()
        leftovers, self._leftovers = self._leftovers, []
        with self._lock:
            leftovers.extend(entry.conn for entry in self._inbox)
            self._inbox.clear()
        return leftovers

    @property
    def preparing(self) -> int:
        """Connections being prepared now (a snapshot, read without the lock)."""
        return len(self._inbox) + self._held

    def _loop(self) -> None:
        held: dict[int, _Entry] = {}
        deadlines: list[tuple[float, int, _Entry]] = []
        selector = self._selector
        selector.register(self._waker, selectors.EVENT_READ)
        try:
            while not self._stopping:
                self._take_inbox(selector, held, deadlines)
                wait = None
                if deadlines:
                    wait = min(_MAX_WAIT, max(0.0, deadlines[0][0] - time.monotonic()))
                if self._rechecks:
                    wait = WaitForData.RECHECK if wait is None else min(wait, WaitForData.RECHECK)
                for key, _events in selector.select(wait):
                    if key.fileobj is self._waker:
                        self._waker.drain()
                        continue
                    entry = held.get(key.fd)
                    if entry is not None:
                        self._advance(entry, selector, held, deadlines)
                self._expire(selector, held, deadlines)
                if self._rechecks:
                    self._recheck(selector, held, deadlines)
                self._held = len(held)
                if len(deadlines) > 2 * len(held) + 64:
                    # Items of connections that moved on stay in the heap until
                    # their deadline; under churn with long timeouts they would
                    # pile up. Rebuild it from the live entries instead.
                    deadlines[:] = [item for item in deadlines if item[2].deadline == item[0]]
                    heapq.heapify(deadlines)
        finally:
            for entry in held.values():
                selector.unregister(entry.fd)
                self._leftovers.append(entry.conn)

    def _take_inbox(
        self,
        selector: selectors.BaseSelector,
        held: dict[int, _Entry],
        deadlines: list[tuple[float, int, _Entry]],
    ) -> None:
        while True:
            with self._lock:
                if not self._inbox:
                    return
                entry = self._inbox.popleft()
            try:
                entry.fd = entry.conn.request.fileno()
            except (OSError, ValueError):
                entry.fd = -1
            if entry.fd < 0:
                # Closed before we could watch it (a drain, a reset): fail it so
                # it is ended and released.
                self._hand_on(self._on_failed, entry.conn, ConnectionAbortedError("closed"))
                continue
            held[entry.fd] = entry
            self._start_step(entry, deadlines)
            if entry.want:
                self._watch(entry, selector)
                if getattr(entry.steps[entry.conn.steps_done], "handover", None) is not None:
                    self._rechecks.setdefault(entry.fd, entry)
            else:
                self._advance(entry, selector, held, deadlines)

    def _start_step(self, entry: _Entry, deadlines: list[tuple[float, int, _Entry]]) -> None:
        timeout = entry.steps[entry.conn.steps_done].timeout
        entry.deadline = None if timeout is None else time.monotonic() + timeout
        if entry.deadline is not None:
            heapq.heappush(deadlines, (entry.deadline, next(self._order), entry))

    def _watch(self, entry: _Entry, selector: selectors.BaseSelector) -> None:
        try:
            selector.modify(entry.fd, entry.want)
        except KeyError:
            selector.register(entry.fd, entry.want)

    def _recheck(
        self,
        selector: selectors.BaseSelector,
        held: dict[int, _Entry],
        deadlines: list[tuple[float, int, _Entry]],
    ) -> None:
        """Hand held connections over, oldest first, while their step's ``handover`` allows."""
        now = time.monotonic()
        if now < self._next_recheck:
            return
        self._next_recheck = now + WaitForData.RECHECK
        for entry in list(self._rechecks.values()):
            handover = getattr(entry.steps[entry.conn.steps_done], "handover", None)
            if handover is not None and not handover():
                break  # no worker free: nobody further back gets one either
            self._advance(entry, selector, held, deadlines)

    def _release(
        self, entry: _Entry, selector: selectors.BaseSelector, held: dict[int, _Entry]
    ) -> None:
        del held[entry.fd]
        self._rechecks.pop(entry.fd, None)
        try:
            selector.unregister(entry.fd)
        except KeyError:
            pass  # never watched: it finished on its first try
        entry.deadline = None  # its heap item, if any, is now stale

    def _advance(
        self,
        entry: _Entry,
        selector: selectors.BaseSelector,
        held: dict[int, _Entry],
        deadlines: list[tuple[float, int, _Entry]],
    ) -> None:
        steps = entry.steps
        conn = entry.conn
        try:
            while True:
                step = steps[conn.steps_done]
                want = step.advance(conn)
                if want:
                    entry.want = want
                    self._watch(entry, selector)
                    if getattr(step, "handover", None) is not None:
                        self._rechecks.setdefault(entry.fd, entry)
                    return
                conn.steps_done += 1
                if conn.steps_done == len(steps):
                    break
                self._start_step(entry, deadlines)
        except Exception as exc:
            self._release(entry, selector, held)
            self._hand_on(self._on_failed, entry.conn, exc)
            return
        self._release(entry, selector, held)
        self._hand_on(self._on_ready, entry.conn)

    def _expire(
        self,
        selector: selectors.BaseSelector,
        held: dict[int, _Entry],
        deadlines: list[tuple[float, int, _Entry]],
    ) -> None:
        now = time.monotonic()
        while deadlines and deadlines[0][0] <= now:
            deadline, _order, entry = heapq.heappop(deadlines)
            if entry.deadline != deadline or held.get(entry.fd) is not entry:
                continue  # stale: the entry moved on to another step, or left
            self._release(entry, selector, held)
            step = entry.steps[entry.conn.steps_done]
            self._hand_on(self._on_failed, entry.conn, _step_timed_out(step))

    def _hand_on(
        self,
        callback: Callable[..., None],
        conn: Connection,
        *args: BaseException,
    ) -> None:
        try:
            callback(conn, *args)
        except Exception:
            # The callbacks end connections and count them; an error there must
            # not stop the thread every waiting connection depends on.
            _log.exception("%s: handing on a connection failed", self._name)
