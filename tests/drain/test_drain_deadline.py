"""drain(timeout) returns by its deadline, whatever the handlers do, and server_close() then does
not wait for handlers the drain gave up on.

A handler that ignores the abort (it catches the error its socket raises and
keeps running) is the worst case: the drain must still come back by its
deadline, report it forced and still running, and let the program stop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

import sockserve
from helpers.clients import connect, recv_line
from sockserve.testing import serving

WAIT = 10.0
TIMEOUT = 2.0
#: The contract is "by the deadline"; this much more absorbs a loaded machine's scheduling.
SLACK = 0.2


class Stubborn(sockserve.BaseRequestHandler):
    """Ignores the abort: keeps running until the test releases it."""

    release = threading.Event()

    def handle(self) -> None:
        self.request.sendall(b"in\n")
        while not self.release.wait(0.01):
            try:
                self.request.recv(1)
            except OSError:
                pass  # the abort shut the socket down: this handler does not care


class AsyncStubborn(sockserve.AsyncStreamRequestHandler):
    release = threading.Event()

    async def handle(self) -> None:
        self.writer.write(b"in\n")
        await self.writer.drain()
        while not self.release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # cancelled at the deadline: this handler does not care


def _server(kind: str, release: threading.Event) -> sockserve.BaseServer:
    address = ("127.0.0.1", 0)
    handler: Any = type("H", (Stubborn,), {"release": release})
    if kind == "threading":
        return sockserve.ThreadingTCPServer(address, handler)
    if kind == "pool":
        return sockserve.ThreadPoolTCPServer(address, handler)
    handler = type("H", (AsyncStubborn,), {"release": release})
    return sockserve.AsyncTCPServer(address, handler, event_loop="asyncio")


@pytest.mark.parametrize("kind", ["threading", "pool", "async"])
def test_drain_returns_by_its_deadline_with_a_handler_that_never_ends(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    server = _server(kind, release)
    try:
        with serving(server, close=False), connect(server.server_address) as client:
            assert recv_line(client) == b"in\n"
            assert server.wait_for(lambda st: st.active == 1, WAIT)
            started = time.monotonic()
            report = server.drain(TIMEOUT)
            elapsed = time.monotonic() - started
        assert elapsed < TIMEOUT + SLACK, f"drain({TIMEOUT}) took {elapsed:.2f} s"
        assert (report.in_flight, report.forced, report.still_running) == (1, 1, 1)
        assert report.finished == 0
        caplog.set_level(logging.WARNING, logger="sockserve.server")
        closer = threading.Thread(target=server.server_close, daemon=True)
        closer.start()
        closer.join(WAIT)
        assert not closer.is_alive(), "server_close() waited for a handler the drain gave up on"
        assert any("still running after the drain" in r.getMessage() for r in caplog.records)
    finally:
        release.set()
    # Once the stubborn handler does end, it is counted as aborted.
    assert server.wait_for(lambda st: st.active == 0, WAIT)
    assert server.stats().aborted == 1


def test_a_drain_with_nothing_left_leaves_server_close_its_wait() -> None:
    """Without abandoned handlers, block_on_close keeps its stdlib meaning."""
    release = threading.Event()
    release.set()
    server = _server("threading", release)
    with serving(server, close=False):
        report = server.drain(TIMEOUT)
    assert report.still_running == 0
    server.server_close()
    assert server.stats().active == 0
