"""``Waker``: the socket pair that interrupts the serving loop's ``select``."""

from __future__ import annotations

import selectors
from collections.abc import Iterator

import pytest

from helpers.clients import Background
from helpers.net import TIMEOUT
from sockserve.core.wakeup import Waker


@pytest.fixture
def waker() -> Iterator[Waker]:
    with Waker() as waker:
        yield waker


@pytest.fixture
def selector(waker: Waker) -> Iterator[selectors.BaseSelector]:
    with selectors.DefaultSelector() as selector:
        selector.register(waker, selectors.EVENT_READ)
        yield selector


def _ready(selector: selectors.BaseSelector, timeout: float) -> list[object]:
    return [key.fileobj for key, _events in selector.select(timeout)]


def test_not_readable_before_a_wake(waker: Waker, selector: selectors.BaseSelector) -> None:
    assert _ready(selector, 0) == []


def test_wake_from_another_thread_makes_select_return(
    waker: Waker, selector: selectors.BaseSelector
) -> None:
    waking = Background(waker.wake)
    assert _ready(selector, TIMEOUT) == [waker]
    waking.join(TIMEOUT)


def test_wake_interrupts_a_select_already_waiting(
    waker: Waker, selector: selectors.BaseSelector
) -> None:
    waiting = Background(_ready, selector, TIMEOUT)
    waker.wake()
    assert waiting.join(TIMEOUT) == [waker]


def test_drain_consumes_every_pending_wake(waker: Waker, selector: selectors.BaseSelector) -> None:
    for _ in range(5):
        waker.wake()
    assert _ready(selector, 0) == [waker]
    waker.drain()
    assert _ready(selector, 0) == []
    waker.drain()  # nothing pending: returns at once
    waker.wake()
    assert _ready(selector, 0) == [waker]


def test_wake_never_blocks_even_when_the_buffer_is_full(
    waker: Waker, selector: selectors.BaseSelector
) -> None:
    # Far more one-byte sends than a socket buffer holds; a blocking send would hang.
    for _ in range(20_000):
        waker.wake()
    assert _ready(selector, 0) == [waker]
    waker.drain()
    assert _ready(selector, 0) == []


def test_wake_after_close_does_not_raise() -> None:
    waker = Waker()
    waker.close()
    waker.wake()
    assert waker.fileno() == -1


def test_context_manager_closes() -> None:
    with Waker() as waker:
        assert waker.fileno() >= 0
    assert waker.fileno() == -1
