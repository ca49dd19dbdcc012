"""Client-side helpers for the pool, limits and drain tests.

Every socket operation is bounded by a timeout; nothing here sleeps.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: Upper bound, in seconds, for any single blocking client operation.
IO_TIMEOUT = 10.0


def connect(
    address: Any,
    *,
    family: int = socket.AF_INET,
    source_ip: str | None = None,
    timeout: float = IO_TIMEOUT,
) -> socket.socket:
    """A connected stream socket with a timeout (bound to ``source_ip`` first if given)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
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


def closed_by_peer(sock: socket.socket, timeout: float = IO_TIMEOUT) -> str:
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

    def join(self, timeout: float = IO_TIMEOUT) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


def run_clients(count: int, fn: Callable[[int], Any], timeout: float = 60.0) -> list[Any]:
    """Run ``fn(i)`` for i in range(count) on ``count`` threads; return the results in order."""
    workers = [Background(fn, i, name=f"test-client-{i}") for i in range(count)]
    return [worker.join(timeout) for worker in workers]
