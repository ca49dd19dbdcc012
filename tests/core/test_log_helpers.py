"""``RateLimitedLog`` (driven by a fake clock) and ``describe_address``."""

from __future__ import annotations

import logging
import threading

import pytest

from helpers.clients import run_clients
from helpers.fakes import TEST_LOGGER, FakeClock, Records
from sockserve.observability.logs import RateLimitedLog, describe_address, server_logger


def _log(clock: FakeClock, interval: float = 10.0, **kwargs: int) -> RateLimitedLog:
    return RateLimitedLog(logging.getLogger(TEST_LOGGER), interval, clock=clock, **kwargs)


# -- RateLimitedLog ---------------------------------------------------------------------


def test_one_line_per_key_per_interval(clock: FakeClock, records: Records) -> None:
    log = _log(clock)
    assert log.log(logging.WARNING, "k", "failed: %s", "first") is True
    assert [log.log(logging.WARNING, "k", "failed: %s", n) for n in range(5)] == [False] * 5
    clock.advance(9.999)
    assert log.log(logging.WARNING, "k", "failed: %s", "late") is False
    assert [r.getMessage() for r in records] == ["failed: first"]
    assert records[0].levelno == logging.WARNING


def test_the_next_line_says_how_many_were_suppressed(clock: FakeClock, records: Records) -> None:
    log = _log(clock)
    log.log(logging.INFO, "k", "event %d", 0)
    for n in range(1, 4):
        log.log(logging.INFO, "k", "event %d", n)
    clock.advance(10.0)  # exactly one interval later: allowed again
    assert log.log(logging.INFO, "k", "event %d", 4) is True
    assert records[-1].getMessage() == "event 4 (3 more like this suppressed)"

    # The count starts again from zero after it was reported.
    log.log(logging.INFO, "k", "event %d", 5)
    clock.advance(10.0)
    log.log(logging.INFO, "k", "event %d", 6)
    clock.advance(10.0)
    log.log(logging.INFO, "k", "event %d", 7)
    assert [r.getMessage() for r in records] == [
        "event 0",
        "event 4 (3 more like this suppressed)",
        "event 6 (1 more like this suppressed)",
        "event 7",
    ]


def test_keys_are_limited_independently(clock: FakeClock, records: Records) -> None:
    log = _log(clock)
    assert log.log(logging.WARNING, ("resource", 24), "a") is True
    assert log.log(logging.WARNING, ("resource", 23), "b") is True
    assert log.log(logging.WARNING, ("resource", 24), "a") is False
    assert [r.getMessage() for r in records] == ["a", "b"]


def test_max_keys_bounds_memory_by_forgetting_the_oldest_key(clock: FakeClock) -> None:
    log = _log(clock, max_keys=2)
    assert log.log(logging.INFO, "a", "a") is True
    assert log.log(logging.INFO, "b", "b") is True
    assert log.log(logging.INFO, "c", "c") is True  # "a" is forgotten to make room
    assert log.log(logging.INFO, "b", "b") is False  # still remembered
    assert log.log(logging.INFO, "c", "c") is False
    assert log.log(logging.INFO, "a", "a") is True  # forgotten: one extra line gets through


def test_zero_interval_lets_every_line_through(clock: FakeClock, records: Records) -> None:
    log = _log(clock, interval=0.0)
    assert all(log.log(logging.INFO, "k", "line") for _ in range(3))
    assert len(records) == 3


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        RateLimitedLog(logging.getLogger(TEST_LOGGER), -1.0)


def test_concurrent_callers_emit_one_line(clock: FakeClock, records: Records) -> None:
    log = _log(clock)
    threads_count = 8
    barrier = threading.Barrier(threads_count, timeout=10)
    emitted: list[bool] = []

    def hammer(_index: int) -> None:
        barrier.wait()
        emitted.extend(log.log(logging.WARNING, "k", "flood") for _ in range(200))

    run_clients(threads_count, hammer, timeout=10)
    assert emitted.count(True) == 1
    assert len(emitted) == threads_count * 200
    assert len(records) == 1


def test_server_logger_name() -> None:
    assert server_logger.name == "sockserve.server"


# -- describe_address --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (("127.0.0.1", 8080), "127.0.0.1:8080"),
        (("0.0.0.0", 0), "0.0.0.0:0"),
        (("localhost", 25), "localhost:25"),
        (("::1", 8080, 0, 0), "[::1]:8080"),
        (("fe80::1%eth0", 7, 0, 2), "[fe80::1%eth0]:7"),
        (("::", 53), "[::]:53"),
        ("/run/echo.sock", "unix:/run/echo.sock"),
        (b"/run/echo.sock", "unix:/run/echo.sock"),
        ("\0abstract", "unix:@abstract"),
        (b"\0abstract", "unix:@abstract"),
        ("", "unix:<unnamed>"),
        (b"", "unix:<unnamed>"),
        (None, "unix:<unnamed>"),
        (b"/bad\xff.sock", "unix:/bad\\xff.sock"),
        (42, "42"),
    ],
    ids=[
        "ipv4",
        "ipv4-any",
        "hostname",
        "ipv6",
        "ipv6-scoped",
        "ipv6-any",
        "unix-path",
        "unix-path-bytes",
        "abstract",
        "abstract-bytes",
        "unnamed",
        "unnamed-bytes",
        "none",
        "undecodable-path",
        "unknown",
    ],
)
def test_describe_address(address: object, expected: str) -> None:
    assert describe_address(address) == expected
