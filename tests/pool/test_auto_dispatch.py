"""dispatch="auto" (the pool's default): hold new connections only while no worker is free.

While a worker is free a connection is handed over at once, first bytes or
not, so a handler that speaks first works without declaring it. Once every
worker is busy, new connections wait in the holding stage until they send
something; silent ones are handed over, oldest first, as workers free up.
"""

from __future__ import annotations

import contextlib
import threading

import sockserve as socketserver
from helpers.clients import connect, recv_line
from sockserve.testing import serving

WAIT = 10.0


def banner_until(release: threading.Event) -> type[socketserver.StreamRequestHandler]:
    """Greets first (an SMTP-style banner, not declared), then echoes one line.

    The handler that gets a line "hold" keeps its worker until ``release``.
    """

    class Banner(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 ready\n")
            line = self.rfile.readline()
            if line == b"hold\n":
                assert release.wait(WAIT)
            self.wfile.write(line)

    return Banner


def test_an_undeclared_banner_is_sent_at_once_while_a_worker_is_free() -> None:
    release = threading.Event()
    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), banner_until(release))
    assert server.dispatch == "auto"
    with serving(server), connect(server.server_address) as client:
        assert recv_line(client) == b"220 ready\n"
        client.sendall(b"hi\n")
        assert recv_line(client) == b"hi\n"
    release.set()


def test_a_silent_client_waits_for_a_free_worker_then_gets_its_banner() -> None:
    release = threading.Event()
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), banner_until(release), max_workers=1
    )
    with serving(server), contextlib.ExitStack() as clients:
        busy = clients.enter_context(connect(server.server_address))
        assert recv_line(busy) == b"220 ready\n"
        busy.sendall(b"hold\n")
        assert server.wait_for(lambda st: st.busy_workers == 1, WAIT)
        waiting = clients.enter_context(connect(server.server_address))
        # Every worker is busy: the new client is held, not queued for a worker.
        assert server.wait_for(lambda st: st.preparing == 1, WAIT)
        assert server.stats().pending == 0
        release.set()
        assert recv_line(busy) == b"hold\n"
        # The worker is free again: the silent client is handed over and greeted.
        assert recv_line(waiting) == b"220 ready\n"
        waiting.sendall(b"bye\n")
        assert recv_line(waiting) == b"bye\n"
    assert server.stats().timed_out == 0


def test_under_pressure_a_client_with_a_request_goes_before_a_silent_one() -> None:
    release = threading.Event()
    order: list[bytes] = []

    class Recorder(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            order.append(line)
            if line == b"hold\n":
                assert release.wait(WAIT)
            self.wfile.write(line)

    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), Recorder, max_workers=1)
    with serving(server), contextlib.ExitStack() as clients:
        busy = clients.enter_context(connect(server.server_address))
        busy.sendall(b"hold\n")
        assert server.wait_for(lambda st: st.busy_workers == 1, WAIT)
        silent = clients.enter_context(connect(server.server_address))
        assert server.wait_for(lambda st: st.preparing == 1, WAIT)
        talker = clients.enter_context(connect(server.server_address))
        talker.sendall(b"request\n")
        assert server.wait_for(lambda st: st.pending == 1, WAIT)
        release.set()
        assert recv_line(talker) == b"request\n"
        silent.sendall(b"late\n")
        assert recv_line(silent) == b"late\n"
    assert order == [b"hold\n", b"request\n", b"late\n"]


def test_overflow_reject_keeps_its_meaning_without_a_holding_stage() -> None:
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), socketserver.StreamRequestHandler, False, overflow="reject"
    )
    try:
        assert server.dispatch == "auto"
        assert server._pipeline.steps == ()  # full means "busy" at once, as asked
    finally:
        server.server_close()


def test_a_handler_that_says_it_speaks_first_is_never_held() -> None:
    class Daytime(socketserver.StreamRequestHandler):
        speaks_first = True

    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), Daytime, False)
    try:
        assert server._pipeline.steps == ()
    finally:
        server.server_close()
