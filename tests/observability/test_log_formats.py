"""The runner's log formats: ISO 8601 timestamps, the text line, JSON lines with their fields."""

from __future__ import annotations

import calendar
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sockserve.observability import formatters
from sockserve.observability.access import access_logger, log_access
from sockserve.observability.formatters import JsonFormatter, TextFormatter, iso_time

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets a test set TZ; the process's zone and the formatter's cache are restored after."""
    monkeypatch.setattr(formatters, "_cache", formatters._SecondCache())
    yield
    monkeypatch.undo()
    time.tzset()


def set_zone(monkeypatch: pytest.MonkeyPatch, tz: str) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    monkeypatch.setattr(formatters, "_cache", formatters._SecondCache())


@pytest.mark.parametrize(
    ("tz", "offset"),
    [("UTC", "+00:00"), ("XYZ-05:30", "+05:30"), ("ABC+03", "-03:00")],
)
def test_the_timestamp_is_local_time_with_milliseconds_and_the_utc_offset(
    zone: None, monkeypatch: pytest.MonkeyPatch, tz: str, offset: str
) -> None:
    set_zone(monkeypatch, tz)
    created = calendar.timegm((2026, 12, 2, 2, 0, 0)) + 0.25
    text = iso_time(created)
    assert re.fullmatch(ISO, text), text
    assert text.endswith(".250" + offset)
    parsed = datetime.fromisoformat(text)
    assert parsed == datetime(2026, 12, 2, 2, 0, 0, 250000, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(
        hours=int(offset[:3]), minutes=int(offset[0] + offset[4:])
    )


def test_the_timestamp_follows_the_second_and_the_zone(
    zone: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_zone(monkeypatch, "UTC")
    assert iso_time(100.75) == "1970-01-01T00:01:40.750+00:00"
    assert iso_time(101.0) == "1970-01-01T00:01:41.000+00:00"  # the cached second moved on
    assert iso_time(100.5) == "1970-01-01T00:01:40.500+00:00"
    set_zone(monkeypatch, "XYZ-01")
    assert iso_time(100.5) == "1970-01-01T01:01:40.500+01:00"


def record(msg: str = "hello %s", *args: object, **attrs: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "sockserve.test", logging.WARNING, __file__, 1, msg, args or ("x",), None
    )
    rec.__dict__.update(attrs)
    return rec


def test_the_text_line_has_time_pid_level_logger_and_message() -> None:
    line = TextFormatter().format(record())
    match = re.fullmatch(rf"({ISO}) \[(\d+)\] WARNING sockserve\.test: hello x", line)
    assert match, line
    assert int(match[2]) == record().process
    stamp = datetime.fromisoformat(match[1]).timestamp()
    assert abs(stamp - time.time()) < 60


def test_the_text_line_keeps_a_traceback_after_it() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record(exc_info=sys.exc_info())
    first, *rest = TextFormatter().format(rec).splitlines()
    assert first.endswith("WARNING sockserve.test: hello x")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"


def test_a_json_line_has_the_fixed_keys_first_and_is_one_line() -> None:
    rec = record("two\nlines %s")
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == ["time", "level", "logger", "pid", "message"]
    assert re.fullmatch(ISO, data["time"])
    assert data["level"] == "WARNING"
    assert data["logger"] == "sockserve.test"
    assert data["pid"] == rec.process
    assert data["message"] == "two\nlines x"


def test_a_json_line_carries_extra_fields_and_the_exception() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        info = sys.exc_info()
    rec = record(exc_info=info, client_address=("127.0.0.1", 5), path=object(), _private=1)
    data = json.loads(JsonFormatter().format(rec))
    assert data["client_address"] == ["127.0.0.1", 5]
    assert data["path"].startswith("<object object")  # no JSON type: written as text
    assert "_private" not in data
    assert data["exception"].startswith("Traceback (most recent call last):")
    assert data["exception"].endswith("KeyError: 'missing'")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access_json() -> Iterator[Collect]:
    handler = Collect()
    handler.setFormatter(JsonFormatter())
    access_logger.addHandler(handler)
    level = access_logger.level
    access_logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        access_logger.removeHandler(handler)
        access_logger.setLevel(level)


def test_access_records_carry_their_fields_for_json(access_json: Collect) -> None:
    log_access(object(), ("10.0.0.1", 4242), "ok", 0.0123456, (6, 7))
    log_access(object(), "/run/app.sock", "refused:max_connections", None, None)
    ok, refused = (json.loads(line) for line in access_json.lines)
    assert ok["message"] == "10.0.0.1:4242 ok 0.012s rx=6 tx=7"
    assert (ok["client"], ok["outcome"], ok["duration"], ok["rx"], ok["tx"]) == (
        "10.0.0.1:4242",
        "ok",
        0.012346,
        6,
        7,
    )
    assert refused["message"] == "unix:/run/app.sock refused:max_connections - rx=- tx=-"
    assert refused["client"] == "unix:/run/app.sock"
    assert (refused["duration"], refused["rx"], refused["tx"]) == (None, None, None)


def test_an_access_log_turned_down_costs_no_record(access_json: Collect) -> None:
    access_logger.setLevel(logging.WARNING)

    class NoCounts:
        def getsockopt(self, *args: object) -> bytes:
            raise AssertionError("the kernel's counters were read for a line nobody writes")

    log_access(NoCounts(), ("10.0.0.1", 1), "ok", 0.1)
    assert access_json.lines == []
