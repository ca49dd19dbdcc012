"""What the runner tests share beyond ``helpers``: the target's line protocol, load, configs.

The target (``targets/mod.py``) answers ``pid``, ``id`` and ``echo TEXT``
lines; ``ask`` and ``Load`` speak it through ``helpers.clients.Conn``. The
child processes themselves are ``helpers.processes.Child`` (the ``sockserve``
and ``spawn`` fixtures).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from helpers.clients import Conn
from helpers.net import TIMEOUT

HANDLER = "tests.runner.targets.mod:Handler"


def ask(port: int, line: bytes | str = b"pid", timeout: float = TIMEOUT) -> str:
    """One connection, one line, one answer."""
    with Conn(port, timeout=timeout) as conn:
        return conn.ask(line)


class SourceConn(Conn):
    """A ``Conn`` from a chosen loopback address (127.0.0.2 ...: a client of its own)."""

    def __init__(self, port: int, source_ip: str, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout, source_address=(source_ip, 0)
        )
        self._buffer = b""


def ask_from(port: int, source_ip: str, line: str) -> str | None:
    """One connection from ``source_ip``, one line, the answer; None if it was closed instead."""
    with SourceConn(port, source_ip) as conn:
        try:
            return conn.ask(line)
        except (ConnectionError, OSError):
            return None


@contextlib.contextmanager
def held_from(port: int, source_ip: str) -> Iterator[SourceConn]:
    """A connection from ``source_ip`` held open (its handler in flight) for the block."""
    with SourceConn(port, source_ip) as conn:
        yield conn


def pids_serving(port: int, want: int, attempts: int = 400) -> set[str]:
    """Connect until ``want`` different processes answered (or ``attempts`` ran out)."""
    seen: set[str] = set()
    for _ in range(attempts):
        seen.add(ask(port))
        if len(seen) >= want:
            break
    return seen


class Load:
    """A client thread: connect, one round trip, close; again and again, counting errors."""

    def __init__(self, port: int, line: str, limit: float = 40.0) -> None:
        self.port = port
        self.line = line
        self.answers: list[str] = []
        self.errors: list[str] = []
        self._limit = limit
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="load")

    def _run(self) -> None:
        end = time.monotonic() + self._limit
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                answer = ask(self.port, self.line, timeout=5.0)
            except OSError as exc:
                answer = ""
                self.errors.append(f"{exc!r} after {len(self.answers)} answers")
            with self._progress:
                if answer:
                    self.answers.append(answer)
                self._progress.notify_all()

    def wait_answers(self, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until ``count`` answers came in, in all."""
        with self._progress:
            assert self._progress.wait_for(
                lambda: len(self.answers) >= count or not self._thread.is_alive(), timeout
            ), f"load stalled at {len(self.answers)} answers, errors {self.errors}"
        assert len(self.answers) >= count, f"load ended early, errors {self.errors}"

    def wait_answer(self, predicate: Callable[[str], bool], start: int) -> None:
        """Wait until an answer from index ``start`` on satisfies ``predicate``."""

        def found() -> bool:
            return any(predicate(a) for a in self.answers[start:])

        with self._progress:
            assert self._progress.wait_for(
                lambda: found() or not self._thread.is_alive(), TIMEOUT
            ), f"no such answer after {len(self.answers) - start}; errors {self.errors}"
        assert found(), f"load ended early, errors {self.errors}"

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


@contextlib.contextmanager
def connections(port: int, count: int) -> Iterator[list[Conn]]:
    opened: list[Conn] = []
    try:
        for _ in range(count):
            opened.append(Conn(port))
        yield opened
    finally:
        for conn in opened:
            conn.close()


def render_deploy_config(config: Path, replacements: dict[str, str]) -> str:
    """A deploy/ configuration file with each address replaced in its one (uncommented) line."""
    lines = config.read_text().splitlines(keepends=True)
    for old, new in replacements.items():
        where = [
            i for i, line in enumerate(lines) if old in line and not line.lstrip().startswith("#")
        ]
        assert len(where) == 1, f"{old!r} should be in exactly one line of {config}"
        lines[where[0]] = lines[where[0]].replace(old, new)
    return "".join(lines)
