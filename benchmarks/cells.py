"""The cells of a run: each workload with fixed parameters, and which of them a run measures.

A *cell* is one workload with fixed parameters (say, ping-pong with 100
connections and 64 B messages); :mod:`benchmarks.workloads` knows how to run
one against a server. The plan below is the whole matrix, in the order it is
measured; ``--quick`` shrinks it to a smoke test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKLOADS = ("pingpong", "churn", "burst", "idle", "udp", "shutdown", "http", "tls")
#: How long a UDP datagram may go unanswered before it counts as lost.
UDP_TIMEOUT_MS = 200
#: Idle connections open at most this many at a time: asyncio's default listen
#: backlog, so no server's accept queue overflows and no SYN waits for a retry.
IDLE_RAMP = 100
#: The servers of the 10,000-idle-connections cell: the event loops the async
#: strategy is measured against, and thread-per-connection servers. A bounded
#: pool or a process per connection cannot hold 10,000 clients by design.
IDLE_10K_SERVERS = (
    "sockserve-threading",
    "sockserve-async",
    "stdlib-threading-somaxconn",
    "asyncio-streams",
    "asyncio-protocol",
    "uvloop-streams",
    "uvloop-protocol",
)


@dataclass
class Cell:
    """One workload with its parameters; ``metric`` is the number its ratios compare."""

    key: str
    workload: str
    proto: str
    title: str
    metric: str
    unit: str
    higher_is_better: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    #: the catalog kinds that run this cell (empty: every kind that speaks ``proto``)
    servers: tuple[str, ...] = ()


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def plan(*, quick: bool, duration: float) -> list[Cell]:
    """The cells of a run, in the order they are measured.

    Burst and idle allow 4 s: a dropped SYN is retried after 1 s and 3 s, and
    the next retry (7 s) would only lengthen the run.
    """
    cells: list[Cell] = []
    if quick:
        pingpong = [(64, 1), (64, 10), (16384, 10)]
        burst, idle, shutdown_trials, burst_timeout = 200, 50, 2, 4.0
    else:
        pingpong = [(size, n) for size in (64, 16384) for n in (1, 10, 100, 1000)]
        burst, idle, shutdown_trials, burst_timeout = 5000, 1000, 4, 4.0
    for size, conns in pingpong:
        cells.append(
            Cell(
                key=f"pingpong-{size}B-c{conns}",
                workload="pingpong",
                proto="tcp",
                title=f"TCP echo, {_size_label(size)} messages, {conns} connection(s)",
                metric="rate",
                unit="round trips/s",
                params={"conns": conns, "size": size, "duration": duration},
            )
        )
    cells.append(
        Cell(
            key="churn-c10",
            workload="churn",
            proto="tcp",
            title="Connection churn: connect, one 64 B round trip, close (10 at a time)",
            metric="rate",
            unit="connections/s",
            params={"conns": 10, "size": 64, "duration": duration},
        )
    )
    cells.append(
        Cell(
            key=f"burst-{burst}",
            workload="burst",
            proto="tcp",
            title=f"Burst: {burst} simultaneous connects, one round trip each, "
            f"{burst_timeout:g} s allowed",
            metric="served",
            unit="clients served",
            params={"conns": burst, "size": 64, "timeout": burst_timeout},
        )
    )
    idle_params = {"size": 64, "timeout": burst_timeout, "hold": 60.0, "ramp": IDLE_RAMP}
    cells.append(
        Cell(
            key=f"idle-{idle}",
            workload="idle",
            proto="tcp",
            title=f"{idle} idle connections held (after one round trip each)",
            metric="kib_per_conn",
            unit="KiB per connection (PSS)",
            higher_is_better=False,
            params={"conns": idle, **idle_params},
        )
    )
    if not quick:
        cells.append(
            Cell(
                key="idle-10000",
                workload="idle",
                proto="tcp",
                title="10,000 idle plain TCP connections held (after one round trip each): "
                "server RSS growth per connection",
                metric="rss_kib_per_conn",
                unit="KiB per connection (RSS)",
                higher_is_better=False,
                params={"conns": 10000, **idle_params, "timeout": 30.0},
                servers=IDLE_10K_SERVERS,
            )
        )
    for clients in (10,) if quick else (10, 100):
        cells.append(
            Cell(
                key=f"udp-64B-c{clients}",
                workload="udp",
                proto="udp",
                title=f"UDP echo ping-pong, 64 B datagrams, {clients} clients, one datagram "
                "outstanding each",
                metric="rate",
                unit="round trips/s",
                params={"conns": clients, "size": 64, "duration": duration},
            )
        )
    cells.append(
        Cell(
            key="shutdown",
            workload="shutdown",
            proto="shutdown",
            title="shutdown() latency while serve_forever runs in another thread",
            metric="shutdown_ms",
            unit="ms",
            higher_is_better=False,
            params={"trials": shutdown_trials},
        )
    )
    for conns in (10, 100):
        cells.append(
            Cell(
                key=f"http-c{conns}",
                workload="http",
                proto="http",
                title=f"HTTP/1.1 keep-alive GET (BaseHTTPRequestHandler), wrk, {conns} connections",
                metric="rate",
                unit="requests/s",
                params={"conns": conns, "duration": max(1.0, duration)},
            )
        )
    cells.append(
        Cell(
            key="http-as-written-c10",
            workload="http",
            proto="http",
            title="HTTP/1.1 keep-alive GET, the handler as usually written (Nagle's algorithm "
            "left on), wrk, 10 connections",
            metric="rate",
            unit="requests/s",
            params={"conns": 10, "duration": max(1.0, duration), "as_written": True},
        )
    )
    tls_pingpong = (10,) if quick else (10, 100)
    for conns in tls_pingpong:
        cells.append(
            Cell(
                key=f"tls-pingpong-64B-c{conns}",
                workload="tls",
                proto="tls",
                title=f"TLS echo, 64 B messages, {conns} connections (sessions set up before "
                "the clock starts)",
                metric="rate",
                unit="round trips/s",
                params={
                    "mode": "pingpong",
                    "conns": conns,
                    "size": 64,
                    "duration": duration,
                    "warmup": True,
                },
            )
        )
    cells.append(
        Cell(
            key="tls-churn-c10",
            workload="tls",
            proto="tls",
            title="New TLS connections: connect, full handshake, one 64 B round trip, close "
            "(10 at a time, no session resumption)",
            metric="rate",
            unit="connections/s",
            params={"mode": "churn", "conns": 10, "size": 64, "duration": duration},
        )
    )
    return cells
