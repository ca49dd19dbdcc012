"""What a failed accept means: its class, the listener's pause, and the rate-limited log."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from helpers.fakes import TEST_LOGGER, FakeClock, Records
from sockserve.core.accept import (
    RESOURCE_ERRNOS,
    TRANSIENT_ERRNOS,
    AcceptErrorKind,
    AcceptThrottle,
    classify_accept_error,
)

LISTENER = "127.0.0.1:7000"

TRANSIENT_NAMES = [
    "EAGAIN",
    "EWOULDBLOCK",
    "EINTR",
    "ECONNABORTED",
    "EPROTO",
    "EPERM",
    "ENETDOWN",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "ECONNRESET",
]
RESOURCE_NAMES = ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]
UNEXPECTED_NAMES = ["EBADF", "EINVAL", "ENOTSOCK", "EFAULT", "EACCES"]


def _error(name: str) -> OSError:
    number = getattr(errno, name)
    return OSError(number, os.strerror(number))


def _present(names: list[str]) -> list[str]:
    return [name for name in names if hasattr(errno, name)]


def _throttle(clock: FakeClock, **kwargs: float) -> AcceptThrottle:
    return AcceptThrottle(logger=logging.getLogger(TEST_LOGGER), clock=clock, **kwargs)


# -- classify_accept_error -----------------------------------------------------------


@pytest.mark.parametrize("name", _present(TRANSIENT_NAMES))
def test_errors_of_one_connection_are_transient(name: str) -> None:
    assert classify_accept_error(_error(name)) is AcceptErrorKind.TRANSIENT


@pytest.mark.parametrize("name", RESOURCE_NAMES)
def test_shortages_are_resource_errors(name: str) -> None:
    assert classify_accept_error(_error(name)) is AcceptErrorKind.RESOURCE


@pytest.mark.parametrize("name", UNEXPECTED_NAMES)
def test_errors_of_a_broken_listener_are_unexpected(name: str) -> None:
    assert classify_accept_error(_error(name)) is AcceptErrorKind.UNEXPECTED


def test_an_error_without_errno_is_unexpected() -> None:
    assert classify_accept_error(OSError("no errno")) is AcceptErrorKind.UNEXPECTED


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), TimeoutError("timed out"), TimeoutError("timed out")],
    ids=["TimeoutError()", "socket.timeout", "TimeoutError(msg)"],
)
def test_a_timeout_is_transient(exc: OSError) -> None:
    assert exc.errno is None
    assert classify_accept_error(exc) is AcceptErrorKind.TRANSIENT


def test_the_errno_classes_do_not_overlap() -> None:
    assert not TRANSIENT_ERRNOS & RESOURCE_ERRNOS
    assert {getattr(errno, name) for name in RESOURCE_NAMES} == RESOURCE_ERRNOS


# -- AcceptThrottle: the pause ---------------------------------------------------------


def test_resource_errors_double_the_pause_up_to_the_maximum(clock: FakeClock) -> None:
    throttle = _throttle(clock, initial_delay=0.01, max_delay=1.0)
    pauses = [throttle.failed(_error("EMFILE"), LISTENER) for _ in range(10)]
    assert pauses == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0, 1.0])


def test_a_success_resets_the_pause(clock: FakeClock) -> None:
    throttle = _throttle(clock, initial_delay=0.05, max_delay=2.0)
    for _ in range(4):
        throttle.failed(_error("ENFILE"), LISTENER)
    throttle.succeeded()
    assert throttle.failed(_error("ENFILE"), LISTENER) == pytest.approx(0.05)
    assert throttle.failed(_error("ENFILE"), LISTENER) == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["ECONNABORTED", "EAGAIN", "EPROTO"])
def test_transient_errors_do_not_pause(clock: FakeClock, name: str) -> None:
    throttle = _throttle(clock)
    assert throttle.failed(_error(name), LISTENER) == 0.0
    assert throttle.failed(TimeoutError(), LISTENER) == 0.0


@pytest.mark.parametrize("name", UNEXPECTED_NAMES)
def test_unexpected_errors_pause_for_the_maximum(clock: FakeClock, name: str) -> None:
    throttle = _throttle(clock, initial_delay=0.01, max_delay=3.0)
    assert throttle.failed(_error(name), LISTENER) == 3.0


def test_failures_are_counted_by_kind(clock: FakeClock) -> None:
    throttle = _throttle(clock)
    for exc in [_error("EMFILE"), _error("EMFILE"), _error("ECONNABORTED"), _error("EBADF")]:
        throttle.failed(exc, LISTENER)
    assert throttle.counts == {
        AcceptErrorKind.RESOURCE: 2,
        AcceptErrorKind.TRANSIENT: 1,
        AcceptErrorKind.UNEXPECTED: 1,
    }


@pytest.mark.parametrize(("initial", "maximum"), [(0, 1.0), (-0.1, 1.0), (2.0, 1.0)])
def test_bad_delays_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial_delay"):
        AcceptThrottle(initial_delay=initial, max_delay=maximum)


# -- AcceptThrottle: the log ---------------------------------------------------------------


def test_resource_errors_log_one_warning_per_interval(clock: FakeClock, records: Records) -> None:
    throttle = _throttle(clock, log_interval=10.0)
    for _ in range(50):
        throttle.failed(_error("EMFILE"), LISTENER)
    assert [r.levelno for r in records] == [logging.WARNING]
    first = records[0].getMessage()
    assert LISTENER in first
    assert "Too many open files" in first

    clock.advance(9.9)
    throttle.failed(_error("EMFILE"), LISTENER)
    assert len(records) == 1

    clock.advance(0.1)
    throttle.failed(_error("EMFILE"), LISTENER)
    assert len(records) == 2
    assert records[1].levelno == logging.WARNING
    assert "(50 more like this suppressed)" in records[1].getMessage()


def test_each_resource_errno_has_its_own_log_budget(clock: FakeClock, records: Records) -> None:
    throttle = _throttle(clock)
    for _ in range(5):
        throttle.failed(_error("EMFILE"), LISTENER)
        throttle.failed(_error("ENOBUFS"), LISTENER)
    assert len(records) == 2
    assert "Too many open files" in records[0].getMessage()
    assert os.strerror(errno.ENOBUFS) in records[1].getMessage()


def test_unexpected_errors_log_rate_limited_errors(clock: FakeClock, records: Records) -> None:
    throttle = _throttle(clock, log_interval=5.0)
    for _ in range(20):
        throttle.failed(_error("EBADF"), LISTENER)
    assert [r.levelno for r in records] == [logging.ERROR]
    assert LISTENER in records[0].getMessage()
    clock.advance(5.0)
    throttle.failed(_error("EBADF"), LISTENER)
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR]
    assert "(19 more like this suppressed)" in records[1].getMessage()


def test_transient_errors_log_only_at_debug(clock: FakeClock, records: Records) -> None:
    throttle = _throttle(clock)
    for _ in range(3):
        throttle.failed(_error("ECONNABORTED"), LISTENER)
    assert [r.levelno for r in records] == [logging.DEBUG] * 3
    assert all(LISTENER in r.getMessage() for r in records)
