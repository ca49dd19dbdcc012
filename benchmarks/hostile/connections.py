"""Client connections in bulk for the attacks, what an attack reports, and the fresh client.

Why one selector per attack and not a thread per attacking client: a thousand
attackers must cost the measuring process little, or the harness would
measure its own scheduling instead of the server's. Every socket here is
non-blocking and every wait has a deadline, so an attack ends on time however
the server behaves (a full listen backlog, a server that never answers).

Everything binds nothing and connects from 127.0.0.1, the address the fresh
client uses too: a defence that limits clients per address meets the attackers
and the legitimate client as one.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, cast

Address = tuple[str, int]

#: The issue's bar: a fresh client is served if its echo is back within this.
PROBE_TIMEOUT_S = 2.0
#: How often the fresh client tries while an attack runs (start to start).
PROBE_INTERVAL_S = 0.5
#: The line the fresh client sends and expects back.
PROBE_LINE = b"fresh client\n"
#: SO_LINGER (on, 0 s): close() sends RST at once and leaves no TIME_WAIT.
LINGER_RESET = struct.pack("ii", 1, 0)


def sock_of(key: selectors.SelectorKey) -> socket.socket:
    """The socket a selector key holds (every selector here holds sockets only)."""
    return cast(socket.socket, key.fileobj)


def close_all(selector: selectors.BaseSelector) -> int:
    """Close every socket still registered, then the selector; how many there were."""
    keys = list(selector.get_map().values())
    for key in keys:
        sock_of(key).close()
    selector.close()
    return len(keys)


def errno_name(exc: OSError) -> str:
    """A short name for a socket error: ``ECONNRESET``, ``timeout``..."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def start_connect(address: Address, *, rcvbuf: int | None = None) -> tuple[socket.socket, int]:
    """A non-blocking socket connecting to ``address``, and connect_ex()'s result.

    0 means connected already, EINPROGRESS that the handshake is under way
    (the socket turns writable when it ends); anything else is a failure the
    caller counts (the socket is still the caller's to close).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if rcvbuf is not None:
            # Before connect(): the window the server sees is sized from it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock, sock.connect_ex(address)
    except BaseException:
        sock.close()
        raise


def connected(sock: socket.socket) -> bool:
    """After a non-blocking connect turned writable: did the handshake succeed?"""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (what a crashing or hostile client does)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    except OSError:
        pass  # the connection is already gone: a plain close() is all there is left
    sock.close()


def open_connections(
    address: Address, count: int, deadline: float, *, rcvbuf: int | None = None
) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections at once; return the established ones and how many failed.

    A handshake still under way at ``deadline`` (monotonic) counts as failed:
    its SYN is being dropped because the server's listen backlog is full.
    """
    done: list[socket.socket] = []
    failed = 0
    selector = selectors.DefaultSelector()
    try:
        for _ in range(count):
            sock, result = start_connect(address, rcvbuf=rcvbuf)
            if result == 0:
                done.append(sock)
            elif result == errno.EINPROGRESS:
                selector.register(sock, selectors.EVENT_WRITE)
            else:
                sock.close()
                failed += 1
        while selector.get_map() and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(remaining):
                sock = sock_of(key)
                selector.unregister(sock)
                if connected(sock):
                    done.append(sock)
                else:
                    sock.close()
                    failed += 1
    except BaseException:
        for sock in done:
            sock.close()
        raise
    finally:
        failed += close_all(selector)
    return done, failed


@dataclass(frozen=True)
class Cut:
    """The server ended one of the attack's connections."""

    #: Seconds since the attack began.
    at_s: float
    #: "eof" (the server closed) or an errno name ("ECONNRESET": it reset).
    how: str


class Crowd:
    """Connections an attack holds open: reads (and drops) what the server sends, notes cuts.

    Single-threaded: the attack that owns it calls :meth:`send_each` and
    :meth:`watch` from one thread.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.cuts: list[Cut] = []
        self.received = 0
        self._selector = selectors.DefaultSelector()

    def add(self, sock: socket.socket) -> None:
        self._selector.register(sock, selectors.EVENT_READ)

    @property
    def live(self) -> int:
        return len(self._selector.get_map())

    def sockets(self) -> list[socket.socket]:
        return [sock_of(key) for key in self._selector.get_map().values()]

    def send_each(self, data: bytes) -> None:
        """Send ``data`` on every live connection, without waiting for any of them."""
        for sock in self.sockets():
            try:
                sock.send(data)
            except BlockingIOError:
                pass  # its buffers are full: the server is not reading, which is the point
            except OSError as exc:
                self.cut(sock, errno_name(exc))

    def watch(
        self,
        until: float,
        stop: threading.Event,
        on_data: Callable[[socket.socket, bytes], None] | None = None,
    ) -> None:
        """Read whatever arrives until ``until`` (monotonic) or ``stop``, recording cuts;
        ``on_data`` sees what came (otherwise it is only counted)."""
        while not stop.is_set() and (remaining := until - time.monotonic()) > 0:
            if not self.live:
                stop.wait(remaining)
                return
            for key, _ in self._selector.select(min(remaining, 0.25)):
                sock = sock_of(key)
                data = self.read(sock)
                if data and on_data is not None:
                    on_data(sock, data)

    def read(self, sock: socket.socket, size: int = 65536) -> bytes:
        """One recv(): what came (counted), or b"" after recording a cut."""
        try:
            data = sock.recv(size)
        except BlockingIOError:
            return b""
        except OSError as exc:
            self.cut(sock, errno_name(exc))
            return b""
        if not data:
            self.cut(sock, "eof")
        self.received += len(data)
        return data

    def cut(self, sock: socket.socket, how: str) -> None:
        """The server ended ``sock``: note when and how, and let go of it."""
        self.cuts.append(Cut(time.monotonic() - self.started, how))
        self._selector.unregister(sock)
        sock.close()

    def close(self) -> None:
        """Close every connection still open (a plain close: the attack is over)."""
        for sock in self.sockets():
            self._selector.unregister(sock)
            sock.close()
        self._selector.close()

    def cut_counts(self) -> dict[str, float | int | None]:
        """How many were cut (how many of them reset), and when the first and last were
        (seconds since the start)."""
        times = [cut.at_s for cut in self.cuts]
        return {
            "cut": len(times),
            # Reset (by the server, or by its kernel when a full backlog drops the
            # connection) rather than closed: the table shows both as cuts.
            "cut_reset": sum(cut.how != "eof" for cut in self.cuts),
            "first_cut_s": round(min(times), 3) if times else None,
            "last_cut_s": round(max(times), 3) if times else None,
            "open_at_end": self.live,
        }


# -- what an attack reports ---------------------------------------------------------------


@dataclass
class AttackResult:
    """What the attacking clients saw."""

    #: Counters, attack-specific (JSON-ready: numbers or None).
    counts: dict[str, float | int | None] = field(default_factory=dict)
    #: One short line for the report's table.
    summary: str = ""
    #: When the attack stopped attacking (time.monotonic()), before it closed its
    #: connections: a probe that ended later did not face the attack.
    ended_at: float = 0.0


def attack_events(
    ready: threading.Event | None, stop: threading.Event | None
) -> tuple[threading.Event, threading.Event]:
    return ready or threading.Event(), stop or threading.Event()


# -- the fresh client ---------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """One fresh client: connect, send a line, read the echo."""

    #: When it began (time.monotonic()).
    started: float
    #: How long it took, served or not.
    took_s: float
    #: The echo came back, whole, within the timeout.
    ok: bool
    #: Why not: "timeout", "eof", "ECONNREFUSED", "ECONNRESET", "mismatch"...
    error: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.took_s


def probe(address: Address, *, timeout: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Try once, as a new legitimate client would; never waits longer than ``timeout``."""
    start = time.monotonic()
    deadline = start + timeout
    reply = b""
    error: str | None = None
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(PROBE_LINE)
            while not reply.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(len(PROBE_LINE) - len(reply))
                if not chunk:
                    error = "eof"
                    break
                reply += chunk
    except OSError as exc:
        error = errno_name(exc)
    if error is None and reply != PROBE_LINE:
        error = "mismatch"
    return ProbeResult(start, time.monotonic() - start, error is None, error)


@dataclass
class Prober:
    """Fresh clients one after another, every ``interval`` seconds, in a background thread.

    ``with Prober(address) as prober: ...`` probes for the block's duration;
    ``prober.results`` holds every attempt (a probe under way when the block
    ends is finished, so the last one may end up to ``timeout`` later: compare
    its ``ended`` with the moment that matters).
    """

    address: Address
    interval: float = PROBE_INTERVAL_S
    timeout: float = PROBE_TIMEOUT_S
    results: list[ProbeResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-prober", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # Start to start; a probe that took longer than the interval (a
            # timeout) is followed by the next at once, never by a catch-up burst.
            next_at = time.monotonic() + self.interval
            self.results.append(probe(self.address, timeout=self.timeout))
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 1.0)
