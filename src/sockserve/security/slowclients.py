"""Slow-client defence: a worker thread is not a client's to hold hostage while others wait.

A bounded pool is safe from floods of threads but can be *starved*: forty
clients that each send a byte a second (slowloris) hold forty workers
forever, and every byte resets an idle timeout. Three parts defend it:

1. **A holding stage** (the pre-handler step ``WaitForData``): while a
   worker is free, a connection takes it at once (``dispatch="auto"``);
   once every worker is busy, new connections are taken off the kernel's
   first-in first-out backlog anyway and held, at the cost of a descriptor,
   not a worker, until they send something (closed after
   ``first_byte_timeout``). Silent ones are handed over, oldest first, as
   workers free up, so a server that speaks first (SMTP's banner) keeps
   working; declaring it (``speaks_first = True``, as daytime and chargen
   do) skips the stage altogether.
2. **Priority**: a connection whose first bytes hold a complete line (or a
   good chunk of data) goes to the front of the pool's queue; one that sent a
   byte or two waits behind, so a real request overtakes a crowd of dribblers.
3. **A progress rule** (:class:`SlowClientGuard`): while connections wait for
   a worker, a worker waiting on its client (in a read or a write) whose
   connection moved fewer than ``min_rate`` bytes a second over the last
   ``min_rate_grace`` seconds or more (every byte a dribbler sends ends one
   read and starts the next: the rate counts, not the length of one wait)
   is taken back. The grace shrinks as the queue grows (``grace x workers /
   (workers + waiting)``, down to two checks, 0.1 s): with 170
   connections waiting for 32 workers, a dribbler keeps one for about 0.2 s.
   The least productive go first, as many as are waiting. Its
   socket is shut down (``shutdown()`` on the descriptor: the only thing that
   wakes a thread blocked in a read), the handler's read raises
   :class:`SlowClientCut` instead of returning a partial line as if it were
   whole, and the connection ends with the outcome ``slow``, counted in
   ``stats().slow_cuts``.

What a legitimate client must do to keep its worker: nothing, while the
server has free workers (no rule applies then; ``idle_timeout`` still does).
While every worker is busy and others wait, it must move at least
``min_rate`` bytes a second (256 by default) whenever the server waits on it
for more than ``min_rate_grace`` (1 s). An interactive session that types a
line every few seconds may then be cut: that is the trade the defence makes,
a fair share for everyone over a worker for whoever holds on.

Rates are first measured by the socket class sockserve gives accepted
connections (:class:`GuardedSocket`): its I/O methods count the bytes each
call moved and note when a thread waits on its client, in tables the guard
reads without a system call. Only a connection those counts call slow is
checked against the kernel's own byte counters (``TCP_INFO``), so a long
``sendall`` to a client reading steadily is not mistaken for a stall. TLS
connections get the same counts from :class:`GuardedSSLSocket`. Unix-socket
connections are not taken back: the kernel keeps no byte counters for them
to confirm a suspect by, and they come from local processes (a proxy on the
same host), not from the network.
"""

from __future__ import annotations

import builtins
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from sockserve.core import timeouts
from sockserve.core.timeouts import IdleTimeoutSocket
from sockserve.engine.connection import Connection
from sockserve.errors import PeerError
from sockserve.observability.access import tcp_byte_counts
from sockserve.observability.logs import RateLimitedLog

__all__ = ["SLOW", "GuardedSSLSocket", "GuardedSocket", "SlowClientCut", "SlowClientGuard"]

#: The outcome word of a connection the guard took back.
SLOW = "slow"

#: id(socket) of the connections whose thread is in a read or a write now.
#: One table for the process: ``add``/``discard`` are single operations
#: (atomic under the GIL), done by each connection's own thread.
_in_io: set[int] = set()
#: id(socket) -> bytes its reads and completed writes have moved so far.
_moved: dict[int, int] = {}
#: id(socket) of the connections the guard cut, until they end.
_cut: set[int] = set()

_raw = socket.socket
_timed_out = timeouts._timed_out


class SlowClientCut(PeerError, ConnectionAbortedError):
    """The connection was taken back from a client too slow while others waited."""


def _check_cut(sock: socket.socket) -> None:
    if id(sock) in _cut:
        raise SlowClientCut("too slow while other clients waited for a worker")


class GuardedSocket(IdleTimeoutSocket):
    """An accepted socket whose blocking I/O calls are visible to the guard (see the module doc).

    Each call says, before it may block, that its thread now waits on the
    client, and counts the bytes it moved once it returns: two set operations
    and a dict update, with no system call. The guard reads the counts; only
    for a connection they call slow does it ask the kernel (a write blocked in
    ``sendall`` moves bytes the count sees only at its end). A read that
    returns nothing after the guard cut the connection raises
    :class:`SlowClientCut`. Kernel timeouts raise ``TimeoutError``, as in
    :class:`~sockserve.core.timeouts.IdleTimeoutSocket`.
    """

    __slots__ = ()

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        key = id(self)
        _in_io.add(key)
        try:
            data = _raw.recv(self, bufsize, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None
        finally:
            _in_io.discard(key)
        if not data:
            _check_cut(self)
        _moved[key] = _moved.get(key, 0) + len(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0, /) -> int:
        key = id(self)
        _in_io.add(key)
        try:
            count = _raw.recv_into(self, buffer, nbytes, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None
        finally:
            _in_io.discard(key)
        if not count:
            _check_cut(self)
        _moved[key] = _moved.get(key, 0) + count
        return count

    def send(self, data: Any, flags: int = 0, /) -> int:
        key = id(self)
        _in_io.add(key)
        try:
            sent = _raw.send(self, data, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None
        finally:
            _in_io.discard(key)
        _moved[key] = _moved.get(key, 0) + sent
        return sent

    def sendall(self, data: Any, flags: int = 0, /) -> None:
        key = id(self)
        _in_io.add(key)
        try:
            _raw.sendall(self, data, flags)
        except BlockingIOError as exc:
            raise _timed_out(self, exc) from None
        finally:
            _in_io.discard(key)
        _moved[key] = _moved.get(key, 0) + memoryview(data).nbytes


_ssl_read = ssl.SSLSocket.read
_ssl_send = ssl.SSLSocket.send


class GuardedSSLSocket(ssl.SSLSocket):
    """A TLS connection whose I/O the guard can see: :class:`GuardedSocket`'s counts, over TLS.

    Every read of an ``SSLSocket`` (``recv``, ``recv_into``, and so
    ``rfile``) goes through ``read``, every write (``send``, ``sendall``, and
    so ``wfile``) through ``send``: those two count the plaintext bytes they
    move. The guard cuts a connection as it cuts a plain one, with
    ``shutdown()`` on the descriptor (never ``SSLSocket.shutdown`` from its
    thread, which would drop the TLS layer under the handler); the blocked
    read then sees the end of the stream (or an EOF error from OpenSSL) and
    raises :class:`SlowClientCut`. The pipeline switches a connection's
    ``SSLSocket`` to this class once the TLS step has wrapped it (the same
    object layout: nothing is copied).
    """

    __slots__ = ()

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # ssl's own parameter names
        key = id(self)
        _in_io.add(key)
        try:
            got: bytes | int = _ssl_read(self, len, buffer)
        except OSError:  # SSLError included: an EOF OpenSSL did not forgive
            _check_cut(self)
            raise
        finally:
            _in_io.discard(key)
        count = got if isinstance(got, int) else builtins.len(got)
        if not count:
            _check_cut(self)
        _moved[key] = _moved.get(key, 0) + count
        return got

    def send(self, data: Any, flags: int = 0) -> int:
        key = id(self)
        _in_io.add(key)
        try:
            sent = _ssl_send(self, data, flags)
        finally:
            _in_io.discard(key)
        _moved[key] = _moved.get(key, 0) + sent
        return sent


class SlowClientGuard:
    """One thread per pool that applies the progress rule while connections wait.

    It sleeps while no connection waits for a worker (``waiting()`` is 0): the
    rule costs nothing then. While some wait it ticks every ``interval``
    seconds; when some of them cannot get a worker soon (``starved()``: every
    worker the pool may have is busy) it samples the byte counters of the
    connections whose worker waits on the client and takes back the slowest.
    """

    def __init__(
        self,
        *,
        running: Callable[[], list[Connection]],
        waiting: Callable[[], int],
        starved: Callable[[], int],
        cut: Callable[[Connection], None],
        min_rate: float,
        grace: float,
        log: RateLimitedLog,
        interval: float = 0.05,
        name: str = "sockserve-slow-clients",
    ) -> None:
        self._running = running
        self._waiting = waiting
        self._starved = starved
        self._cut = cut
        self.min_rate = min_rate
        self.grace = grace
        self._log = log
        self.interval = interval
        self._name = name
        self._pressure = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: id(socket) -> (monotonic time, bytes its calls moved) at the start of its window.
        self._samples: dict[int, tuple[float, int]] = {}
        #: id(socket) -> (monotonic time, the kernel's byte count) when it became a suspect.
        self._suspects: dict[int, tuple[float, int]] = {}

    def pressure(self) -> None:
        """Connections wait for a worker: start checking (called by the pool, cheap)."""
        if self._pressure.is_set():
            return
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._pressure.set()

    def stop(self) -> None:
        self._stopping = True
        self._pressure.set()
        thread = self._thread
        if thread is not None:
            thread.join()

    def _stopped(self) -> bool:
        # A method: another thread sets the flag while this one waits.
        return self._stopping

    def _loop(self) -> None:
        while not self._stopped():
            self._pressure.wait()
            if self._stopped():
                return
            waiting = self._waiting()
            if not waiting:
                self._pressure.clear()
                self._samples.clear()
                self._suspects.clear()
                if self._waiting():  # raced with a new arrival: keep going
                    self._pressure.set()
                continue
            try:
                starved = self._starved()
                if starved:
                    self._take_back(starved)
                else:  # workers are still being started
                    self._samples.clear()
                    self._suspects.clear()
            except Exception:
                # The guard must outlive a surprise: without it the pool is
                # open to starvation again.
                logging.getLogger("sockserve.pool").exception("%s: check failed", self._name)
            time.sleep(self.interval)

    def _take_back(self, waiting: int) -> None:
        """Cut up to ``waiting`` of the slowest connections that break the rule.

        A connection is judged over windows of ``grace`` seconds: the bytes
        its handler's reads and writes moved (no system call). One that moved
        too few while its thread waits on the client becomes a suspect, and
        only then are the kernel's byte counters read, twice, a few ticks
        apart: a suspect the kernel saw moving enough (a long ``sendall`` to a
        reader who keeps up) is cleared, the others are taken back, slowest
        first.
        """
        now = time.monotonic()
        running = self._running()
        # The more connections wait per worker, the sooner a slow one must
        # give its worker up: the grace shrinks with the queue (down to two ticks).
        grace = max(2 * self.interval, self.grace * len(running) / (len(running) + waiting))
        confirm = 2 * self.interval
        windows: dict[int, tuple[float, int]] = {}
        suspects: dict[int, tuple[float, int]] = {}
        slow: list[tuple[float, Connection]] = []
        for conn in running:
            key = id(conn.request)
            moved = _moved.get(key, 0)
            start, start_moved = window = self._samples.get(key, (now, moved))
            windows[key] = window
            if key not in _in_io:
                continue  # its handler is working, not waiting on the client
            elapsed = now - start
            if elapsed < grace:
                continue  # observed too briefly to call it slow
            if (moved - start_moved) / elapsed >= self.min_rate:
                windows[key] = (now, moved)  # fast enough: judge the next window afresh
                continue
            counts = tcp_byte_counts(conn.request)
            if counts is None:
                continue  # not TCP: no counters to confirm it by
            kernel = counts[0] + counts[1]
            first = self._suspects.get(key)
            if first is None or now - first[0] < confirm:
                suspects[key] = first or (now, kernel)
                continue
            rate = (kernel - first[1]) / (now - first[0])
            if rate < self.min_rate:
                slow.append((rate, conn))
                suspects[key] = first
            else:
                windows[key] = (now, moved)  # the kernel saw it move: cleared
        self._samples = windows
        self._suspects = suspects
        slow.sort(key=lambda item: item[0])
        for rate, conn in slow[:waiting]:
            self._log.log(
                logging.WARNING,
                (SLOW,),
                "taking back a worker from a slow client (%.0f B/s) while %d wait",
                rate,
                waiting,
            )
            _cut.add(id(conn.request))
            self._cut(conn)


def release(sock: object) -> None:
    """Forget a connection that ended (its id may be reused by another socket)."""
    key = id(sock)
    _cut.discard(key)
    _in_io.discard(key)
    _moved.pop(key, None)
