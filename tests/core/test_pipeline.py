"""The connection pipeline's parts on their own: outcomes, the tracker's table, the strategies'
contract and the pre-handler stage's driver."""

from __future__ import annotations

import errno
import logging
import queue
import socket
import time
import warnings
from typing import Any

import pytest

import sockserve
from helpers.clients import connect, recv_line
from sockserve.engine.connection import (
    ABORTED,
    ERROR,
    OK,
    PEER_ERROR,
    RESET,
    TIMEOUT,
    Connection,
    classify,
    peer_ip,
)
from sockserve.engine.prepare import (
    DONE,
    NOT_CHEAP,
    READ,
    Preparer,
    WaitForData,
    advance_cheap,
    prepare_in_place,
)
from sockserve.engine.tracker import ConnectionTracker
from sockserve.strategies.base import Strategy
from sockserve.testing import serving

WAIT = 10.0


# -- outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "outcome", "level"),
    [
        (TimeoutError("idle"), TIMEOUT, logging.INFO),
        (ConnectionResetError(), RESET, logging.INFO),
        (BrokenPipeError(), RESET, logging.INFO),
        (sockserve.LineTooLong(10), PEER_ERROR, logging.WARNING),
        (ValueError("bug"), ERROR, logging.ERROR),
        (OSError(errno.EBADF, "closed"), ERROR, logging.ERROR),
        (None, ERROR, logging.ERROR),
    ],
)
def test_one_classification_of_what_ended_a_connection(
    exc: BaseException | None, outcome: str, level: int
) -> None:
    failure = classify(exc)
    assert (failure.outcome, failure.level) == (outcome, level)


def test_the_first_outcome_decided_wins() -> None:
    conn = Connection(object(), ("127.0.0.1", 1))
    conn.end_as(ABORTED)
    conn.end_as(RESET)  # what the aborted handler then sees does not change it
    assert conn.outcome == ABORTED


def test_ipv4_mapped_addresses_count_as_the_ipv4_client() -> None:
    assert peer_ip(("::ffff:10.0.0.1", 80, 0, 0)) == "10.0.0.1"
    assert peer_ip(("::1", 80, 0, 0)) == "::1"
    assert peer_ip("/run/app.sock") is None


# -- the tracker's table ------------------------------------------------------------------


def test_the_tracker_counts_each_final_outcome_once() -> None:
    tracker = ConnectionTracker()
    outcomes = [OK, TIMEOUT, RESET, PEER_ERROR, ERROR, ABORTED, "denied", "closed-idle"]
    for outcome in outcomes:
        conn = Connection(object(), ("127.0.0.1", 1))
        assert tracker.admit(conn) is None
        conn.end_as(outcome)
        assert tracker.release(conn)
        assert not tracker.release(conn)  # idempotent: counted once
    _acc, active, completed, _rej, events = tracker.snapshot()
    assert (active, completed) == (0, len(outcomes))
    assert events == {
        "timed_out": 1,
        "disconnects": 1,
        "peer_errors": 1,
        "handler_errors": 1,
        "aborted": 1,
        "denied": 1,
        "closed_idle": 1,
    }


def test_a_replaced_request_still_finds_its_connection() -> None:
    """A TLS handshake replaces the socket object: the table follows it."""
    tracker = ConnectionTracker(max_connections_per_ip=1)
    old, new = object(), object()
    conn = Connection(old, ("127.0.0.1", 1))
    assert tracker.admit(conn) is None
    tracker.rekey(conn, new)
    assert tracker.find(new) is conn
    assert tracker.find(old) is None
    assert tracker.release(conn)
    assert tracker.in_flight == 0


def test_readdressing_moves_the_per_ip_count_to_the_real_client() -> None:
    tracker = ConnectionTracker(max_connections_per_ip=1)
    proxied = [Connection(object(), ("10.0.0.9", n)) for n in range(2)]
    assert tracker.admit(proxied[0]) is None
    assert tracker.readdress(proxied[0], ("192.0.2.1", 5000)) is None
    # The proxy's address is free again, the real client's is taken.
    assert tracker.admit(proxied[1]) is None
    assert tracker.readdress(proxied[1], ("192.0.2.1", 5001)) == "max_connections_per_ip"
    assert tracker.readdress(proxied[1], ("192.0.2.2", 5001)) is None
    for conn in proxied:
        tracker.release(conn)
    assert tracker.in_flight == 0


def test_trusted_proxies_take_no_per_ip_slot_until_readdressed() -> None:
    tracker = ConnectionTracker(max_connections_per_ip=1)
    tracker.per_ip_exempt = lambda address: address[0] == "10.0.0.9"  # type: ignore[index]
    behind = [Connection(object(), ("10.0.0.9", n)) for n in range(3)]
    for conn in behind:
        assert tracker.admit(conn) is None  # the proxy's own address is never limited
    assert tracker.readdress(behind[0], ("192.0.2.1", 1)) is None
    assert tracker.readdress(behind[1], ("192.0.2.1", 2)) == "max_connections_per_ip"
    tracker.unadmit(behind[1], "max_connections_per_ip")  # what refusing it does
    assert dict(tracker.rejected) == {"max_connections_per_ip": 1}  # counted once
    assert tracker.readdress(behind[2], ("192.0.2.2", 3)) is None
    direct = Connection(object(), ("192.0.2.1", 4))
    assert tracker.admit(direct) == "max_connections_per_ip"  # the real client's slot is taken
    for conn in (behind[0], behind[2]):
        assert tracker.release(conn)
    assert tracker.admit(direct) is None
    assert tracker.release(direct) and tracker.in_flight == 0


# -- the strategies' contract -----------------------------------------------------------


class Echo(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


class AsyncEcho(sockserve.AsyncStreamRequestHandler):
    async def handle(self) -> None:
        self.writer.write(await self.reader.readline())


@pytest.mark.parametrize(
    ("cls", "handler"),
    [
        (sockserve.TCPServer, Echo),
        (sockserve.ThreadingTCPServer, Echo),
        (sockserve.ForkingTCPServer, Echo),
        (sockserve.ThreadPoolTCPServer, Echo),
        (sockserve.AsyncTCPServer, AsyncEcho),
    ],
)
def test_every_mix_in_serves_through_a_declared_strategy(cls: type[Any], handler: Any) -> None:
    server = cls(("127.0.0.1", 0), handler)
    try:
        strategy = server._pipeline.strategy
        assert isinstance(strategy, Strategy)
        assert isinstance(strategy.background, bool)
    finally:
        server.server_close()


def test_a_coroutine_finish_request_still_works_with_a_deprecation_warning() -> None:
    calls: queue.Queue[str] = queue.Queue()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Legacy(sockserve.AsyncTCPServer):
            async def finish_request(self, request: Any, client_address: Any) -> None:  # type: ignore[override]
                calls.put("legacy hook")
                await self.finish_request_async(request, client_address)

    assert [w.category for w in caught] == [DeprecationWarning]
    assert "finish_request_async" in str(caught[0].message)
    server = Legacy(("127.0.0.1", 0), AsyncEcho, event_loop="asyncio")
    with serving(server), connect(server.server_address) as client:
        client.sendall(b"old\n")
        assert recv_line(client) == b"old\n"
    assert calls.get(timeout=WAIT) == "legacy hook"


# -- the pre-handler stage's driver ------------------------------------------------------


class Steps:
    """Scripted steps: each says what it waits for, from a list, then DONE."""

    kind = "test"

    def __init__(self, name: str, wants: list[int], timeout: float | None, cheap: bool) -> None:
        self.name = name
        self.timeout = timeout
        self.cheap = cheap
        self._wants = list(wants)
        self.calls = 0

    def advance(self, conn: Connection) -> int:
        self.calls += 1
        want = self._wants.pop(0) if self._wants else DONE
        if want == READ:
            # A step waits for *new* bytes: it takes what is there first (the
            # contract), or the level-triggered selector would report it ready again.
            try:
                conn.request.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        return want


@pytest.fixture
def pair() -> Any:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def _preparer() -> tuple[Preparer, queue.Queue[tuple[str, Any]]]:
    done: queue.Queue[tuple[str, Any]] = queue.Queue()
    preparer = Preparer(
        on_ready=lambda conn: done.put(("ready", conn)),
        on_failed=lambda conn, exc: done.put(("failed", exc)),
    )
    return preparer, done


def test_cheap_steps_that_need_no_wait_finish_on_the_calling_thread(pair: Any) -> None:
    cheap = Steps("cheap", [], timeout=1.0, cheap=True)
    costly = Steps("costly", [], timeout=1.0, cheap=False)
    conn = Connection(pair[0], "peer")
    assert advance_cheap(conn, [cheap, costly]) == NOT_CHEAP  # stops before the costly one
    assert conn.steps_done == 1 and cheap.calls == 1 and costly.calls == 0
    waits = Steps("waits", [READ], timeout=1.0, cheap=True)
    conn = Connection(pair[0], "peer")
    assert advance_cheap(conn, [waits]) == READ
    assert conn.steps_done == 0  # the preparer (or the in-place driver) goes on from here
    assert advance_cheap(Connection(pair[0], "peer"), [cheap]) == DONE


def test_each_step_waits_for_readiness_under_its_own_deadline(pair: Any) -> None:
    fast = WaitForData(timeout=5.0)
    never = Steps("never ready", [READ] * 1000, timeout=0.05, cheap=False)
    preparer, done = _preparer()
    try:
        assert preparer.prepare(Connection(pair[0], "peer"), [fast, never])
        assert done.empty()  # no data yet: waiting in the preparer
        pair[1].sendall(b"x")  # the first step completes; the second then times out
        verdict, exc = done.get(timeout=WAIT)
        assert verdict == "failed"
        assert isinstance(exc, TimeoutError)
        assert "never ready" in str(exc)
    finally:
        preparer.stop()


def test_a_failing_step_hands_its_error_on(pair: Any) -> None:
    class Broken:
        name = "broken"
        kind = "test"
        timeout = 1.0
        cheap = False

        def advance(self, conn: Connection) -> int:
            raise sockserve.LineTooLong(5)

    preparer, done = _preparer()
    try:
        preparer.prepare(Connection(pair[0], "peer"), [Broken()])
        verdict, exc = done.get(timeout=WAIT)
        assert verdict == "failed" and isinstance(exc, sockserve.LineTooLong)
    finally:
        preparer.stop()


def test_stop_returns_what_was_still_being_prepared(pair: Any) -> None:
    steps = [WaitForData(timeout=None)]
    preparer, done = _preparer()
    conn = Connection(pair[0], "peer")
    preparer.prepare(conn, steps)
    assert preparer.stop() == [conn]
    assert done.empty()
    assert not preparer.prepare(Connection(pair[1], "peer"), steps)  # stopped: refuses new work


def test_held_silent_connections_are_handed_over_oldest_first_as_room_appears() -> None:
    """WaitForData's ``handover``: the preparer asks it again while it holds connections."""
    workers = [0]  # workers free; a connection handed over takes one (as a pool's submit)
    done: queue.Queue[tuple[str, Any]] = queue.Queue()

    def ready(conn: Connection) -> None:
        workers[0] -= 1
        done.put(("ready", conn))

    preparer = Preparer(on_ready=ready, on_failed=lambda conn, exc: done.put(("failed", exc)))
    steps = [WaitForData(timeout=None, handover=lambda: workers[0] > 0)]
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        conns = [Connection(left, "peer") for left, _right in pairs]
        for conn in conns:
            assert preparer.prepare(conn, steps)
        # All three are held before a worker frees up (else the last one could
        # still be in the inbox and be handed over on its first try).
        deadline = time.monotonic() + WAIT
        while preparer.preparing != 3 or preparer._inbox:
            assert time.monotonic() < deadline, "the preparer never took the connections"
            time.sleep(0.01)
        for expected in conns[:2]:
            assert done.empty()  # no free worker, no bytes: held
            workers[0] += 1  # a worker frees up
            assert done.get(timeout=WAIT) == ("ready", expected)
        pairs[2][1].sendall(b"x")  # the last one earns its turn by speaking
        assert done.get(timeout=WAIT) == ("ready", conns[2])
        assert conns[2].partial  # "x", no newline: it will queue behind complete requests
    finally:
        preparer.stop()
        for left, right in pairs:
            left.close()
            right.close()


def test_in_place_steps_wait_and_time_out_on_the_calling_thread(pair: Any) -> None:
    conn = Connection(pair[0], "peer")
    with pytest.raises(TimeoutError, match="first bytes"):
        prepare_in_place(conn, [WaitForData(timeout=0.05)])
    assert conn.steps_done == 0
    pair[1].sendall(b"x")
    prepare_in_place(conn, [WaitForData(timeout=0.05)])  # data there: done at once
    assert conn.steps_done == 1
