"""Clients of the servers under test, and threads to run them on.

Every socket operation is bounded by ``helpers.net.TIMEOUT`` (or a shorter
timeout the caller gives); nothing here sleeps. The line helpers read a byte
at a time where a test may still want what follows the line, and through a
buffer (``Conn``) where a conversation goes on over one connection.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from helpers.net import TIMEOUT


def _family_of(address: Any) -> int:
    if isinstance(address, str | bytes):
        return socket.AF_UNIX
    if ":" in address[0]:
        return socket.AF_INET6
    return socket.AF_INET


def connect(
    address: Any,
    *,
    family: int | None = None,
    source_ip: str | None = None,
    timeout: float = TIMEOUT,
) -> socket.socket:
    """A connected stream socket with a timeout (bound to ``source_ip`` first if given).

    The family follows from the address (a path is AF_UNIX) unless given.
    """
    sock = socket.socket(_family_of(address) if family is None else family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if source_ip is not None:
            sock.bind((source_ip, 0))
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def recv_line(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    """One line, read a byte at a time so nothing after it is consumed (shorter at EOF)."""
    data = bytearray()
    while len(data) < limit:
        byte = sock.recv(1)
        if not byte:
            break
        data += byte
        if byte == b"\n":
            break
    return bytes(data)


def exchange(sock: socket.socket, line: bytes = b"ping\n") -> bytes:
    """Send one line on ``sock``; return the line that comes back (b"" if it closed)."""
    sock.sendall(line)
    return recv_line(sock)


def round_trip(address: Any, line: bytes = b"ping\n", timeout: float = TIMEOUT) -> bytes:
    """One connection, one line sent, the line that comes back; then the connection closes."""
    with connect(address, timeout=timeout) as sock:
        return exchange(sock, line)


def closed_by_peer(sock: socket.socket, timeout: float = TIMEOUT) -> str:
    """Wait for the peer to end the connection: "eof" or "reset".

    Data that arrives first is discarded. Raises TimeoutError if the
    connection is still open after ``timeout`` seconds of silence.
    """
    sock.settimeout(timeout)
    for _ in range(100_000):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return "reset"
        if not chunk:
            return "eof"
    raise AssertionError("the peer kept sending instead of closing")


def receive_until_eof(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes its side."""
    chunks = []
    while chunk := sock.recv(256 * 1024):
        chunks.append(chunk)
    return b"".join(chunks)


class Conn:
    """A client connection for a line protocol: one line out, one line back, many times."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self._buffer = b""

    def ask(self, line: bytes | str = b"pid") -> str:
        """Send one line, return the answer line (without its newline)."""
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data.rstrip(b"\n") + b"\n")
        return self.read_line()

    def read_line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed; got {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def at_eof(self) -> bool:
        """Whether the server ended the connection (EOF or reset), within the timeout."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def short_tempdir() -> Iterator[str]:
    """A temporary directory with a short path (AF_UNIX paths are limited to ~107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ss-", dir="/tmp") as path:
        yield path


class Background:
    """Run ``fn(*args)`` in a daemon thread; ``join`` returns its result or re-raises."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "test-background") -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float = TIMEOUT) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


def run_clients(count: int, fn: Callable[[int], Any], timeout: float = 60.0) -> list[Any]:
    """Run ``fn(i)`` for i in range(count) on ``count`` threads; return the results in order.

    ``timeout`` bounds the whole run; a client's exception is raised here.
    """
    workers = [Background(fn, i, name=f"test-client-{i}") for i in range(count)]
    deadline = time.monotonic() + timeout
    return [worker.join(max(deadline - time.monotonic(), 0)) for worker in workers]


def send_then_shut_write(sock: socket.socket, data: bytes) -> Background:
    """Send ``data`` then EOF from a thread, so the test can read the replies meanwhile."""

    def send() -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    return Background(send, name="test-sender")
