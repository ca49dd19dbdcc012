"""The workloads: what each cell of the matrix runs against one server, and what it measures.

A *cell* is one workload with fixed parameters (say, ping-pong with 100
connections and 64 B messages). Running a cell against a server starts that
server in a fresh subprocess, samples its process tree from /proc before and
after the load, and returns a flat dict of metrics. Fresh processes cost a
fraction of a second per run but keep one run's threads and memory from
leaking into the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import loadgen, wrk
from benchmarks.catalog import split_name
from benchmarks.handlers import AS_WRITTEN_ENV
from benchmarks.harness import ServerProcess, ServerUnavailable, check_origin, run_python_module
from benchmarks.procstat import TreeSample, sample_tree

WORKLOADS = ("pingpong", "churn", "burst", "idle", "udp", "shutdown", "http")
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


@dataclass
class Context:
    """What every run needs: the load generator binary and where server logs go.

    ``sources`` maps a revision label to the exported ``src`` directory its
    kinds (``sockserve-pool@LABEL``) import sockserve from.
    """

    exe: Path
    log_dir: Path
    sources: dict[str, Path] = field(default_factory=dict)

    def sockserve_src(self, name: str) -> Path | None:
        """Where server ``name`` imports sockserve from (None: this tree)."""
        label = split_name(name)[1]
        if label is None:
            return None
        if label not in self.sources:
            raise ValueError(f"{name}: revision {label} was not exported")
        return self.sources[label]

    def server(self, name: str, proto: str) -> ServerProcess:
        """The server process for ``name`` (a catalog kind, or one at a revision)."""
        kind = split_name(name)[0]
        return ServerProcess(
            kind, proto, self.log_dir, name=name, sockserve_src=self.sockserve_src(name)
        )


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
    return cells


# -- metrics ---------------------------------------------------------------------------


def _cpu_metrics(
    before: TreeSample, after: TreeSample, ops: int, client_cpu_s: float
) -> dict[str, Any]:
    server_cpu = max(0.0, after.cpu_s - before.cpu_s)
    return {
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_op": server_cpu * 1e6 / ops if ops else None,
        "client_cpu_s": client_cpu_s,
        "client_cpu_us_per_op": client_cpu_s * 1e6 / ops if ops else None,
        "server_threads": after.threads,
        "server_processes": after.processes,
    }


def _loadgen_metrics(result: dict[str, Any]) -> dict[str, Any]:
    latency = result["latency_us"]
    errors = result["errors"]
    ops = int(result["ops"])
    elapsed = float(result["elapsed_s"])
    return {
        "ops": ops,
        "elapsed_s": elapsed,
        "rate": ops / elapsed if elapsed > 0 else 0.0,
        "conns": result["conns"],
        "connected": result["connected"],
        "served": result["served"],
        "mismatches": result["mismatches"],
        "errors": sum(errors.values()),
        "error_detail": errors,
        "lost": result["lost"],
        "late": result["late"],
        "p50_us": latency["p50"],
        "p99_us": latency["p99"],
        "p999_us": latency["p999"],
        "max_us": latency["max"],
    }


def _client_cpu(result: dict[str, Any]) -> float:
    return float(result["cpu_user_s"]) + float(result["cpu_sys_s"])


# -- runners ---------------------------------------------------------------------------


def _run_loadgen_mode(cell: Cell, kind: str, ctx: Context, mode: str) -> dict[str, Any]:
    """pingpong, churn, burst, udp: one load run between two /proc samples."""
    p = cell.params
    proto = "udp" if mode == "udp" else "tcp"
    options: dict[str, Any] = {"conns": p["conns"], "size": p["size"]}
    if mode == "burst":
        options["timeout"] = p["timeout"]
        bound = p["timeout"]
    else:
        options["duration"] = p["duration"]
        bound = p["duration"]
    if mode == "udp":
        options["udp_timeout_ms"] = UDP_TIMEOUT_MS
    with ctx.server(kind, proto) as server:
        before = sample_tree(server.pid)
        result = loadgen.run(ctx.exe, mode, server.port, bound_s=bound + 2, **options)
        after = sample_tree(server.pid)
        alive = server.alive()
        backlog = server.info.get("backlog")
    metrics = _loadgen_metrics(result)
    metrics.update(_cpu_metrics(before, after, metrics["ops"], _client_cpu(result)))
    metrics["server_alive"] = alive
    metrics["listen_backlog"] = backlog
    if mode == "burst":
        served = metrics["served"]
        metrics["served_fraction"] = served / p["conns"]
        metrics["all_served_s"] = metrics["elapsed_s"] if served == p["conns"] else None
    return metrics


def run_pingpong(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """Throughput and latency of N connections echoing fixed-size messages."""
    return _run_loadgen_mode(cell, kind, ctx, "pingpong")


def run_churn(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """Short connections: what accept + handler setup + teardown cost."""
    return _run_loadgen_mode(cell, kind, ctx, "churn")


def run_burst(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """A thundering herd: does the listen backlog and accept loop keep up?"""
    return _run_loadgen_mode(cell, kind, ctx, "burst")


def run_udp(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """Datagram echo; unanswered datagrams count as lost."""
    return _run_loadgen_mode(cell, kind, ctx, "udp")


def run_idle(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """Memory and threads a server spends on connections that do nothing.

    Each connection does one round trip before it idles: that proves the
    server accepted it and its handler (thread, task, protocol) exists, where
    a connection still in the kernel's accept queue would cost the server
    nothing and flatter it. Memory is the growth of the tree's RSS and PSS
    while they are held, divided by the clients served; kernel socket
    buffers are not in either.
    """
    p = cell.params
    shortfall = loadgen.fd_shortfall(p["conns"])
    if shortfall:
        raise RuntimeError(shortfall)
    sources = loadgen.sources_for(p["conns"])
    with ctx.server(kind, "tcp") as server:
        before = sample_tree(server.pid, memory=True)
        with loadgen.held_connections(
            ctx.exe,
            server.port,
            conns=p["conns"],
            size=p["size"],
            timeout=p["timeout"],
            hold=p["hold"],
            ramp=p.get("ramp", 0),
            sources=sources,
        ) as result:
            after = sample_tree(server.pid, memory=True)
        alive = server.alive()
    metrics = _loadgen_metrics(result)
    served = metrics["served"]
    metrics.update(
        {
            "source_addresses": sources,
            "server_alive": alive,
            "kib_per_conn": (after.pss_bytes - before.pss_bytes) / 1024 / served
            if served
            else None,
            "rss_kib_per_conn": (after.rss_bytes - before.rss_bytes) / 1024 / served
            if served
            else None,
            "pss_before_mib": before.pss_bytes / 2**20,
            "pss_after_mib": after.pss_bytes / 2**20,
            "rss_before_mib": before.rss_bytes / 2**20,
            "rss_after_mib": after.rss_bytes / 2**20,
            "threads_before": before.threads,
            "server_threads": after.threads,
            "server_processes": after.processes,
        }
    )
    return metrics


def run_shutdown(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """shutdown() latency, in a subprocess that runs the server in-process."""
    trials = int(cell.params["trials"])
    args = ["--kind", split_name(kind)[0], "--trials", str(trials), "--loadgen", str(ctx.exe)]
    source = ctx.sockserve_src(kind)
    done = run_python_module("benchmarks.shutdown", args, 90, sockserve_src=source)
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
    data = json.loads(line) if line else {}
    if done.returncode == 3 or "unavailable" in data:
        raise ServerUnavailable(data.get("unavailable", "unavailable"))
    if done.returncode != 0 or not data:
        raise RuntimeError(f"shutdown measurement failed ({done.returncode}): {done.stderr[-800:]}")
    check_origin(kind, data.get("sockserve"), source)
    samples = sorted(data["shutdown_ms"])
    middle = statistics.median(samples)
    close_ms = data["close_with_idle_client_ms"]
    return {
        "ops": len(samples),
        "shutdown_ms": middle,
        "shutdown_ms_max": samples[-1],
        "shutdown_samples_ms": samples,
        "close_idle_ms": close_ms,
        "close_idle_blocked": close_ms is None,
        "close_cap_ms": data["close_cap_ms"],
        "mismatches": 0,
    }


@contextlib.contextmanager
def _as_written(on: bool) -> Iterator[None]:
    """Have the server processes started in the block serve ``AsWrittenHTTPHandler``."""
    if not on:
        yield
        return
    os.environ[AS_WRITTEN_ENV] = "1"
    try:
        yield
    finally:
        del os.environ[AS_WRITTEN_ENV]


def run_http(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """HTTP/1.1 keep-alive requests through BaseHTTPRequestHandler, driven by wrk."""
    p = cell.params
    with (
        _as_written(p.get("as_written", False)),
        ctx.server(kind, "http") as server,
    ):
        before = sample_tree(server.pid)
        result = wrk.run(server.port, conns=p["conns"], duration=p["duration"])
        after = sample_tree(server.pid)
        alive = server.alive()
    requests = int(result["requests"])
    elapsed = float(result["elapsed_s"])
    latency = result["latency_us"]
    errors = result["errors"]
    metrics: dict[str, Any] = {
        "ops": requests,
        "elapsed_s": elapsed,
        "rate": requests / elapsed if elapsed > 0 else 0.0,
        "conns": p["conns"],
        "errors": sum(errors.values()),
        "error_detail": errors,
        "mismatches": 0,
        "p50_us": latency["p50"],
        "p99_us": latency["p99"],
        "p999_us": latency["p999"],
        "max_us": latency["max"],
        "server_alive": alive,
    }
    metrics.update(_cpu_metrics(before, after, requests, float(result["cpu_s"])))
    return metrics


RUNNERS: dict[str, Callable[[Cell, str, Context], dict[str, Any]]] = {
    "pingpong": run_pingpong,
    "churn": run_churn,
    "burst": run_burst,
    "idle": run_idle,
    "udp": run_udp,
    "shutdown": run_shutdown,
    "http": run_http,
}


def run_cell(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """Run ``cell`` against server ``kind``; raises on failure."""
    return RUNNERS[cell.workload](cell, kind, ctx)
