"""max_line: a size-less rfile.readline() is bounded; an explicit size is the caller's own.

The limit counts the terminator: a line of exactly max_line bytes ("...\\n"
included) is returned, one byte more raises LineTooLong, which is a PeerError
(counted in stats().peer_errors, one WARNING line, no traceback) and a
ValueError.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import socket
from collections.abc import Callable
from typing import Any

import pytest

import sockserve as socketserver
from helpers.clients import closed_by_peer, connect, recv_line
from helpers.handlers import LineEcho
from helpers.net import TIMEOUT
from sockserve.core.reader import BoundedReader
from sockserve.testing import serving

WAIT = 10.0
LIMIT = 1024


class Outcome:
    """What a handler's read returned or raised, handed to the test thread."""

    def __init__(self) -> None:
        self._results: queue.Queue[tuple[str, Any]] = queue.Queue()

    def put(self, kind: str, value: Any) -> None:
        self._results.put((kind, value))

    def get(self) -> tuple[str, Any]:
        return self._results.get(timeout=WAIT)


def reading_handler(
    outcome: Outcome,
    read: Callable[[Any], Any],
    *,
    handler_max_line: int | None = None,
) -> type[socketserver.StreamRequestHandler]:
    """A handler that runs ``read(rfile)``, reports the outcome, answers "ok" and re-raises."""

    class Reader(socketserver.StreamRequestHandler):
        max_line = handler_max_line

        def handle(self) -> None:
            try:
                value = read(self.rfile)
            except Exception as exc:
                outcome.put("raised", exc)
                raise
            outcome.put("returned", value)
            self.wfile.write(b"ok\n")

    return Reader


def run_one(
    handler: type[socketserver.StreamRequestHandler],
    payload: bytes,
    *,
    server_class: type[socketserver.TCPServer] = socketserver.ThreadingTCPServer,
    keep_open: bool = True,
    **options: Any,
) -> tuple[socketserver.TCPServer, str]:
    """Serve one connection that sends ``payload``; return the server and how it ended.

    With ``keep_open`` the client neither sends a newline after the payload nor
    closes its side, so only a bounded read can end the handler.
    """
    server = server_class(("127.0.0.1", 0), handler, **options)
    with serving(server), connect(server.server_address) as client:
        client.sendall(payload)
        if not keep_open:
            client.shutdown(socket.SHUT_WR)
        ending = recv_line(client).decode() or closed_by_peer(client)
        assert server.wait_for(lambda st: st.active == 0, WAIT)
    return server, ending.strip()


# -- the bound ----------------------------------------------------------------


def test_a_long_line_raises_line_too_long_without_waiting_for_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline())
    with caplog.at_level(logging.INFO, logger="sockserve.server"):
        server, ending = run_one(handler, b"x" * 5000, max_line=LIMIT)
    kind, exc = outcome.get()
    assert kind == "raised"
    assert isinstance(exc, socketserver.LineTooLong)
    assert isinstance(exc, socketserver.PeerError)
    assert isinstance(exc, ValueError)
    assert exc.limit == LIMIT
    assert ending in ("eof", "reset")  # the connection is closed, not answered
    stats = server.stats()
    assert stats.peer_errors == 1
    assert stats.handler_errors == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].exc_info is None  # one line, no traceback
    assert f"line longer than {LIMIT} bytes" in warnings[0].getMessage()
    assert "127.0.0.1" in warnings[0].getMessage()


class CountingRaw(io.RawIOBase):
    """A raw reader over a socket that counts the bytes it hands to the buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._sock.recv_into(buffer)
        self.count += n
        return n


def test_the_reader_stops_reading_past_the_limit() -> None:
    """Against a client streaming a megabyte with no newline, the reader takes ~max_line."""
    buffer_size = 64
    consumed: list[int] = []
    outcome = Outcome()

    class Counting(socketserver.StreamRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.rfile.close()
            self.raw = CountingRaw(self.connection)
            self.rfile = BoundedReader(self.raw, buffer_size, max_line=LIMIT)

        def handle(self) -> None:
            try:
                self.rfile.readline()
            except socketserver.LineTooLong as exc:
                consumed.append(self.raw.count)
                outcome.put("raised", exc)
                raise

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Counting, max_line=LIMIT)
    with serving(server), connect(server.server_address) as client:
        with contextlib.suppress(OSError):  # the server closes while we still send
            client.sendall(b"y" * (1 << 20))
        assert outcome.get()[0] == "raised"
        assert server.wait_for(lambda st: st.peer_errors == 1, WAIT)
    assert consumed and consumed[0] <= LIMIT + 1 + buffer_size


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_a_line_of_exactly_max_line_bytes_is_accepted(terminator: bytes) -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline())
    line = b"z" * (LIMIT - len(terminator)) + terminator
    server, ending = run_one(handler, line, max_line=LIMIT)
    assert outcome.get() == ("returned", line)
    assert ending == "ok"
    assert server.stats().peer_errors == 0


def test_one_byte_more_than_max_line_raises() -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline())
    run_one(handler, b"z" * LIMIT + b"\n", max_line=LIMIT)
    kind, exc = outcome.get()
    assert kind == "raised"
    assert isinstance(exc, socketserver.LineTooLong)


def test_the_last_line_before_eof_may_lack_its_newline() -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline())
    run_one(handler, b"w" * LIMIT, keep_open=False, max_line=LIMIT)
    assert outcome.get() == ("returned", b"w" * LIMIT)


@pytest.mark.parametrize(
    ("read", "payload"),
    [
        pytest.param(lambda rfile: [line for line in rfile], b"ok\n" + b"x" * 5000, id="for"),
        pytest.param(lambda rfile: rfile.readlines(), b"ok\n" + b"x" * 5000, id="readlines"),
        pytest.param(lambda rfile: rfile.readline(-1), b"x" * 5000, id="readline(-1)"),
        pytest.param(lambda rfile: rfile.readline(None), b"x" * 5000, id="readline(None)"),
    ],
)
def test_every_sizeless_way_of_reading_lines_is_bounded(
    read: Callable[[Any], Any], payload: bytes
) -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, read)
    run_one(handler, payload, max_line=LIMIT)
    kind, exc = outcome.get()
    assert kind == "raised"
    assert isinstance(exc, socketserver.LineTooLong)


def test_readline_with_an_explicit_size_is_not_bounded() -> None:
    """http.server reads its request line with readline(65537) and answers 414 itself."""
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline(10_000))
    line = b"x" * 5000 + b"\n"
    server, ending = run_one(handler, line, max_line=LIMIT)
    assert outcome.get() == ("returned", line)
    assert ending == "ok"
    assert server.stats().peer_errors == 0


# -- who sets the limit ---------------------------------------------------------


def test_a_handler_max_line_lower_than_the_servers_wins() -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline(), handler_max_line=100)
    run_one(handler, b"x" * 200 + b"\n", max_line=65536)
    kind, exc = outcome.get()
    assert kind == "raised"
    assert exc.limit == 100


def test_a_handler_max_line_higher_than_the_servers_wins() -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline(), handler_max_line=10_000)
    line = b"x" * 5000 + b"\n"
    run_one(handler, line, max_line=LIMIT)
    assert outcome.get() == ("returned", line)


def test_stdlib_named_servers_do_not_bound_lines_by_default() -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline())
    line = b"x" * 200_000 + b"\n"
    run_one(handler, line)
    assert outcome.get() == ("returned", line)


def test_pool_servers_bound_lines_at_64_kib_by_default() -> None:
    outcome = Outcome()
    handler = reading_handler(outcome, lambda rfile: rfile.readline())
    server, _ending = run_one(handler, b"x" * 70_000, server_class=socketserver.ThreadPoolTCPServer)
    kind, exc = outcome.get()
    assert kind == "raised"
    assert exc.limit == 65536
    assert server.stats().peer_errors == 1


def test_the_server_goes_on_after_a_line_too_long() -> None:
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), LineEcho, max_line=64, max_workers=1
    )
    with serving(server):
        for _ in range(3):
            with connect(server.server_address) as bad:
                bad.sendall(b"x" * 100)
                assert closed_by_peer(bad, TIMEOUT) in ("eof", "reset")
        with connect(server.server_address) as good:
            good.sendall(b"fine\n")
            assert recv_line(good) == b"fine\n"
        assert server.wait_for(lambda st: st.peer_errors == 3, WAIT)
        assert server.stats().workers == 1
