"""A graceful stop, bounded by one deadline: stop accepting, let work finish, abort the rest.

The procedure, whatever the strategy:

1. stop the serving loop, take what the kernel already queued (those clients
   connected before the drain: they are served, not reset), then close the
   listener, so new clients are refused at once instead of waiting in a
   backlog nobody will read;
2. close the connections that never started (the pre-handler stage's that
   wait for their first bytes: they have sent nothing yet): ``closed-idle``;
   those in the middle of another step (a TLS handshake) go on to a worker,
   which finishes the step and serves them like any connection in flight;
3. set ``server.draining`` and let the connections in flight finish, until
   the deadline minus the *abort grace*;
4. mark what is left ``aborted`` and abort it (sockets shut down so blocked
   reads return, tasks cancelled, children killed), then give the aborted
   handlers the abort grace to return;
5. report: how many finished, how many were forced, how many handlers had
   still not returned when the deadline came.

The abort grace comes out of the timeout (a quarter of it, at most
``drain_abort_grace`` seconds), so ``drain(timeout)`` returns by its
deadline, whatever the handlers do. ``force_drain()`` skips to step 4.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sockserve.engine.connection import ABORTED, CLOSED_IDLE
from sockserve.engine.lifecycle import State
from sockserve.observability.logs import describe_address, server_logger

if TYPE_CHECKING:
    from sockserve.engine.pipeline import ConnectionPipeline
    from sockserve.servers import BaseServer

__all__ = ["DrainReport", "drain"]


@dataclass(frozen=True)
class DrainReport:
    """What a drain did, for logs and for the caller's exit status."""

    #: Requests in flight when the drain began (connections closed idle excluded).
    in_flight: int
    #: Of those, how many finished on their own before the deadline.
    finished: int
    #: How many were aborted (their sockets shut down, tasks cancelled, children killed).
    forced: int
    #: Aborted requests whose handlers had still not returned at the deadline.
    still_running: int
    #: Connections that had not started (nothing sent yet) and were closed at once.
    idle_closed: int
    #: Seconds the drain took.
    elapsed: float

    def __str__(self) -> str:
        text = (
            f"drained in {self.elapsed:.3f} s: {self.finished} of {self.in_flight} "
            f"in-flight request(s) finished, {self.forced} forced"
        )
        if self.still_running:
            text += f", {self.still_running} still running"
        if self.idle_closed:
            text += f", {self.idle_closed} idle connection(s) closed"
        return text


def abort_grace(timeout: float, longest: float) -> float:
    """The part of a drain's timeout kept for aborted handlers to return."""
    return min(longest, timeout / 4)


def drain(server: BaseServer, pipeline: ConnectionPipeline, timeout: float) -> DrainReport:
    """Run the procedure of the module doc on ``server``; return its report."""
    started = time.monotonic()
    deadline = started + timeout
    abort_at = deadline - abort_grace(timeout, server.drain_abort_grace)
    lifecycle, tracker, strategy = pipeline.lifecycle, pipeline.tracker, pipeline.strategy
    lifecycle.move(State.DRAINING)
    server._stop_serving_for_drain()
    completed_before = tracker.completed
    in_flight = tracker.in_flight
    idle = pipeline.close_idle(finish_started=True)
    for conn in idle:
        conn.end_as(CLOSED_IDLE)
        pipeline.end(conn)
    lifecycle.draining.set()
    strategy.wait_idle(abort_at, lifecycle.force)
    finished = tracker.completed - completed_before - len(idle)
    forced = tracker.connections()
    still_running = 0
    if forced:
        for conn in forced:
            conn.end_as(ABORTED)
        for conn in strategy.abort(forced):
            pipeline.end(conn)  # queued, never started: no handler will end it
        # A force may have come early: the aborted still get the grace, within the deadline.
        strategy.wait_idle(min(deadline, time.monotonic() + server.drain_abort_grace))
        still_running = tracker.in_flight
    report = DrainReport(
        in_flight=in_flight - len(idle),
        finished=finished,
        forced=len(forced),
        still_running=still_running,
        idle_closed=len(idle),
        elapsed=time.monotonic() - started,
    )
    pipeline.abandoned = still_running
    server_logger.info("%s: %s", describe_address(server.server_address), report)
    return report
