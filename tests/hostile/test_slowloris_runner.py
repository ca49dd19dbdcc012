"""Slowloris against ``sockserve run --workers 2`` with its defaults: fresh clients still served.

The issue's second probe: 100 (here also 200) clients at a byte a second
against a runner with two worker processes of 32 pool threads each. The
runner passes the pool's defaults (``dispatch="auto"``, ``min_rate``) to
every worker; the dribblers are cut there and counted in each worker's
access log with the outcome ``slow``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
from benchmarks.hostile.attacks import slowloris
from benchmarks.hostile.connections import probe

from helpers.clients import Background
from helpers.processes import STARTED, child_env

pytestmark = pytest.mark.slow

#: The promise is 2 s (the hostile harness measures it: docs/security.md, a max of 1.1 s
#: through the runner with 200 dribblers); under a loaded CI machine the bound keeps a
#: margin, and still fails without the defence (no fresh client served during the attack).
SERVED_WITHIN = 4.0
TARGET = "benchmarks.hostile.sockserve_handlers:LineEcho"


@pytest.mark.parametrize("clients", [100, 200])
@pytest.mark.parametrize("line_first", [False, True], ids=["bytes", "line-then-bytes"])
def test_the_runner_serves_fresh_clients_during_slowloris(
    spawn: Any, clients: int, line_first: bool
) -> None:
    # Without -X dev: the promise is about a server as deployed.
    argv = [sys.executable, "-m", "sockserve", "run", TARGET, "--bind", "127.0.0.1:0"]
    server = spawn(
        [*argv, "--workers", "2", "--idle-timeout", "2", "--access-log"], env=child_env()
    )
    port = server.port()
    server.wait_for(STARTED, count=2)
    address = ("127.0.0.1", port)
    ready = threading.Event()
    stop = threading.Event()
    attack = Background(
        lambda: slowloris(
            address, clients=clients, duration=8.0, line_first=line_first, ready=ready, stop=stop
        ),
        name="slowloris",
    )
    try:
        assert ready.wait(10)
        # The dribblers hold all 64 threads (and more wait) before the first probe.
        server.wait_for(r" slow ", timeout=10)
        results = [probe(address, timeout=5.0) for _ in range(3)]
        # The access log names each dribbler taken back while the attack lasts.
        server.wait_for(r" slow ", count=3, timeout=10)
    finally:
        stop.set()
        attack.join(20)
    assert all(r.ok for r in results), results
    assert max(r.took_s for r in results) < SERVED_WITHIN, [r.took_s for r in results]
