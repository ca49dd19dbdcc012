"""Fixtures of the core unit tests: a clock that moves when told, and the captured log."""

from __future__ import annotations

import logging

import pytest

from helpers.fakes import TEST_LOGGER, FakeClock, Records


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Records:
    """What is logged to ``TEST_LOGGER`` (the logger under test), at any level."""
    caplog.set_level(logging.DEBUG, logger=TEST_LOGGER)
    return Records(caplog)
