"""Fixtures shared by the whole suite.

Every wait in the suite is bounded by ``helpers.net.TIMEOUT``; a test that
would hang fails after it instead (pytest-timeout is the last resort, not the
mechanism).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.net import Net, SelectWatch


def pytest_configure(config: pytest.Config) -> None:
    # Python 3.12+ warns when a multi-threaded process forks. The forking
    # servers do that by design whenever their serving loop runs in a thread,
    # as in the stdlib's own tests; every other warning stays an error.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\):DeprecationWarning",
    )


@pytest.fixture
def net() -> Iterator[Net]:
    """Servers, serving threads and client sockets, all cleaned up after the test."""
    owner = Net()
    try:
        yield owner
    finally:
        owner.teardown()


@pytest.fixture
def select_watch(monkeypatch: pytest.MonkeyPatch) -> SelectWatch:
    """Wait until a serving loop (started after this fixture) is blocked in select()."""
    return SelectWatch(monkeypatch)
