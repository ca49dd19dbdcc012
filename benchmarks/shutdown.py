"""Shutdown latency of socketserver-API servers, measured in-process.

``python -m benchmarks.shutdown --kind K --trials N`` prints one JSON line.

Two measurements, because they fail differently:

* ``shutdown_ms``: ``serve_forever`` runs in a thread, the server has just
  served a request; how long until ``server.shutdown()`` returns. The stdlib
  only notices the request at its next poll (every 0.5 s), so the call is made
  at spread-out offsets into the poll period instead of always right after a
  request, which would always hit its worst case.
* ``close_with_idle_client_ms``: a client is connected and idle (its handler
  is blocked reading); how long until ``shutdown()`` plus ``server_close()``
  return. A server that joins handler threads waits for the client forever,
  so this is capped and reported as "blocked" past the cap.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.servers import Unavailable, make_socketserver, raise_fd_limit, sockserve_origin

#: The stdlib's default poll interval; the offsets below spread over it.
POLL_INTERVAL_S = 0.5
#: How long server_close() may block on an idle client before we call it blocked.
CLOSE_CAP_S = 2.0


def _round_trip(exe: Path, port: int) -> None:
    """One connection, one echoed message, closed: proof that the server is serving.

    The client is the load generator, in its own process: a client socket
    opened here would be inherited by a forking server's children and keep
    their connections from ever seeing EOF.
    """
    result = loadgen.run(exe, "burst", port, bound_s=10, conns=1, size=64, timeout=10)
    if result["served"] != 1:
        raise RuntimeError(f"readiness round trip failed: {result}")


def _start(kind: str) -> tuple[Any, threading.Thread]:
    server = make_socketserver(kind, "shutdown")
    thread = threading.Thread(target=server.serve_forever, name="serve_forever", daemon=True)
    thread.start()
    return server, thread


def measure_shutdown(kind: str, offset_s: float, exe: Path) -> float:
    """Milliseconds for shutdown() to return, called ``offset_s`` after a served request."""
    server, thread = _start(kind)
    try:
        _round_trip(exe, server.server_address[1])
        time.sleep(offset_s)  # a point in the poll period, not a readiness wait
        started = time.perf_counter()
        server.shutdown()
        elapsed = time.perf_counter() - started
        thread.join(timeout=10)
    finally:
        server.server_close()
    return elapsed * 1000.0


def measure_close_with_idle_client(kind: str, exe: Path) -> float | None:
    """Milliseconds for shutdown() + server_close() with an idle client; None if blocked."""
    server, thread = _start(kind)
    port = server.server_address[1]
    done = threading.Event()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        done.set()

    stopper = threading.Thread(target=stop, name="stopper", daemon=True)
    with loadgen.held_connections(exe, port, conns=1, size=64, timeout=10, hold=30) as held:
        if held["served"] != 1:
            raise RuntimeError(f"the idle client was not served: {held}")
        started = time.perf_counter()
        stopper.start()
        finished = done.wait(CLOSE_CAP_S)
        elapsed = time.perf_counter() - started
    # Leaving the block closed the client, which releases a server that waits for it.
    stopper.join(timeout=10)
    thread.join(timeout=10)
    return elapsed * 1000.0 if finished else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="shutdown latency of one server kind")
    parser.add_argument("--kind", required=True)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--loadgen", type=Path, required=True, help="the built load generator")
    args = parser.parse_args(argv)
    raise_fd_limit()
    trials = max(1, min(args.trials, 20))
    offsets = [POLL_INTERVAL_S * i / trials for i in range(trials)]
    try:
        shutdown_ms = [measure_shutdown(args.kind, offset, args.loadgen) for offset in offsets]
        close_ms = measure_close_with_idle_client(args.kind, args.loadgen)
    except Unavailable as exc:
        print(json.dumps({"unavailable": str(exc)}))
        return 3
    result = {
        "kind": args.kind,
        "shutdown_ms": shutdown_ms,
        "close_with_idle_client_ms": close_ms,
        "close_cap_ms": CLOSE_CAP_S * 1000.0,
        "sockserve": sockserve_origin(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
