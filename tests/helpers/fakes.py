"""Stand-ins for time and for the log, shared by the unit tests of the core."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

#: The logger the unit tests hand to the code under test (``records`` captures it).
TEST_LOGGER = "sockserve.test"


class FakeClock:
    """A clock that moves only when told to (``advance``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def records_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    """The records the test captured from ``logger`` itself (not its children)."""
    return [r for r in caplog.records if r.name == logger]


class Records(Sequence[logging.LogRecord]):
    """The records of the current test phase, read afresh on every access."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __getitem__(self, index: Any) -> Any:
        return self._caplog.records[index]

    def __len__(self) -> int:
        return len(self._caplog.records)
