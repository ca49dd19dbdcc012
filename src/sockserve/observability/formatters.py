"""How the runner's log records look: a timestamped text line, or one JSON object per line.

Both formatters stamp each record with its local time in ISO 8601 / RFC 3339
form, milliseconds and the UTC offset included (``2026-12-02T02:00:00.123+00:00``),
so lines from several hosts and time zones sort and compare without guessing,
and ``datetime.fromisoformat`` (or any log shipper) reads them back. The
offset has its colon (gunicorn writes ``+0000``): RFC 3339, which most log
pipelines parse by default, requires it.

* :class:`TextFormatter`: ``TIME [PID] LEVEL LOGGER: MESSAGE``, the traceback
  (if any) on the lines after it. The pid tells a master's lines from its
  workers'.
* :class:`JsonFormatter`: JSON lines for log shippers. Fixed keys first
  (``time``, ``level``, ``logger``, ``pid``, ``message``), then every field a
  caller passed with ``extra=`` (the access log passes ``client``,
  ``outcome``, ``duration``, ``rx`` and ``tx``, so a shipper gets them without
  parsing the message), then ``exception`` and ``stack`` when present.

Both can be named in a ``--log-config`` file (``"()":
"sockserve.observability.formatters.JsonFormatter"``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["JsonFormatter", "TextFormatter", "iso_time"]

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: whatever else a record carries came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", (), None)), "message", "asctime", "taskName"]
)


class _SecondCache:
    """The formatted local date, time and offset of the last second seen.

    A busy access log writes thousands of lines a second; formatting the
    date once per second instead of once per line keeps the cost of a
    timestamp to a comparison and a string concatenation. The three parts
    live in one tuple, replaced whole, so a thread never reads a second
    with another second's text.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, str, str] = (-1, "", "")

    def parts(self, created: float) -> tuple[str, str]:
        """(``YYYY-MM-DDTHH:MM:SS``, ``+HH:MM``) of the local time at ``created``."""
        second = int(created)
        last = self.last
        if last[0] != second:
            local = time.localtime(second)
            offset = time.strftime("%z", local)  # +0100: RFC 3339 wants +01:00
            if len(offset) == 5:
                offset = f"{offset[:3]}:{offset[3:]}"
            last = self.last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", local), offset)
        return last[1], last[2]


_cache = _SecondCache()


def iso_time(created: float, msecs: float | None = None) -> str:
    """``created`` (seconds since the epoch) as ``2026-12-02T02:00:00.123+00:00``, local time."""
    date_time, offset = _cache.parts(created)
    millis = int(msecs if msecs is not None else (created - int(created)) * 1000)
    return f"{date_time}.{millis:03d}{offset}"


class TextFormatter(logging.Formatter):
    """``2026-12-02T02:00:00.123+00:00 [4100] INFO sockserve.master: ...`` (the default)."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or TEXT_FORMAT, datefmt)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """ISO 8601 with milliseconds and offset, unless the caller asked for ``datefmt``."""
        if datefmt:
            return super().formatTime(record, datefmt)
        return iso_time(record.created, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": iso_time(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in data and not key.startswith("_"):
                data[key] = value
        if record.exc_info and not record.exc_text:  # cached, as logging.Formatter does
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra value JSON has no type for (an address tuple is
        # a list already; a Path, an exception...) is written as its text.
        return json.dumps(data, default=str, ensure_ascii=False)
