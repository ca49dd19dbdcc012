"""Fixtures shared by the whole suite.

Every wait in the suite is bounded by ``helpers.net.TIMEOUT``; a test that
would hang fails after it instead (pytest-timeout is the last resort, not the
mechanism).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from helpers.net import Net, SelectWatch
from helpers.processes import Child

Spawn = Callable[..., Child]


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


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog``, recording every level of the ``sockserve.server`` logger."""
    caplog.set_level(logging.DEBUG, logger="sockserve.server")
    return caplog


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """``spawn(argv, env=..., pass_fds=..., cwd=..., stdin=...)``: a ``Child`` process.

    Any process: a sockserve server, a helper server, HAProxy, a wrapper.
    Each is killed with its whole process group at teardown.
    """
    started: list[Child] = []

    def spawn(argv: Sequence[str], **options: Any) -> Child:
        child = Child(argv, **options)
        started.append(child)
        return child

    yield spawn
    for child in reversed(started):
        child.close()
