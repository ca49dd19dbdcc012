"""The log volume is the server's to decide, not an attacker's.

Every peer-caused line (resets, timeouts, over-long lines, handler exceptions)
goes through one rate limiter keyed by the kind of event: the first of a kind
is logged whole (with its traceback), the repeats within the interval are
counted, and the count is written once the interval is over.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

import sockserve
from helpers.fakes import FakeClock
from sockserve.observability.logs import RateLimitedLog
from sockserve.testing import serving

FAILURES = 2000


class AlwaysFails(sockserve.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1)
        raise RuntimeError("this handler always fails")


def _fail_many(server: sockserve.BaseServer, count: int) -> None:
    with serving(server):
        for _ in range(count):
            with socket.create_connection(server.server_address, timeout=10) as client:
                client.sendall(b"x")
                assert client.recv(1) == b""  # the server ended the connection
        assert server.wait_for(lambda st: st.handler_errors == count, 10)


def test_thousands_of_failing_requests_cost_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    server = sockserve.TCPServer(("127.0.0.1", 0), AlwaysFails)
    caplog.set_level(logging.INFO, logger="sockserve.server")
    _fail_many(server, FAILURES)
    server.server_close()
    errors = [r for r in caplog.records if r.name == "sockserve.server" and r.levelno >= 40]
    assert len(errors) == 1, [r.getMessage() for r in errors][:5]
    assert errors[0].exc_info is not None  # the first of its kind keeps its traceback
    assert server.stats().handler_errors == FAILURES  # every one is still counted


def test_the_suppressed_count_is_written_when_the_storm_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    server: Any = sockserve.TCPServer(("127.0.0.1", 0), AlwaysFails)
    server._pipeline.error_log = RateLimitedLog(
        logging.getLogger("sockserve.server"), 10.0, clock=clock
    )
    caplog.set_level(logging.INFO, logger="sockserve.server")
    _fail_many(server, 50)
    clock.advance(11.0)
    server._pipeline.error_log.flush()  # what the serving loop does every turn
    server.server_close()
    lines = [r.getMessage() for r in caplog.records if r.name == "sockserve.server"]
    assert sum("Exception occurred" in line for line in lines) == 1
    summary = [line for line in lines if "more like" in line]
    assert len(summary) == 1 and summary[0].startswith("49 more like error RuntimeError")


def test_different_kinds_are_not_folded_together(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimitedLog(logging.getLogger("test.kinds"), 10.0, clock=FakeClock())
    caplog.set_level(logging.INFO, logger="test.kinds")
    for _ in range(3):
        limiter.log(logging.INFO, ("reset", "ConnectionResetError", None), "reset")
        limiter.log(logging.WARNING, ("peer-error", "LineTooLong", None), "too long")
    assert [r.getMessage() for r in caplog.records] == ["reset", "too long"]
