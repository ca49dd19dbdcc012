"""The workloads: what running a cell (see :mod:`benchmarks.cells`) against one server does.

Running a cell against a server starts that server in a fresh subprocess,
samples its process tree from /proc before and after the load, and returns a
flat dict of metrics. Fresh processes cost a fraction of a second per run but
keep one run's threads and memory from leaking into the next.
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
from benchmarks.catalog import spec_for, split_name
from benchmarks.cells import UDP_TIMEOUT_MS, Cell
from benchmarks.handlers import AS_WRITTEN_ENV
from benchmarks.harness import ServerProcess, ServerUnavailable, check_origin, run_python_module
from benchmarks.procstat import TreeSample, sample_tree
from benchmarks.tlscerts import TLSFiles


@dataclass
class Context:
    """What every run needs: the load generator binary and where server logs go.

    ``sources`` maps a revision label to the exported ``src`` directory its
    kinds (``sockserve-pool@LABEL``) import sockserve from; ``tls`` holds the
    run's certificates (None: the TLS cells do not run).
    """

    exe: Path
    log_dir: Path
    sources: dict[str, Path] = field(default_factory=dict)
    tls: TLSFiles | None = None

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
        env = None
        if proto == "tls":
            if self.tls is None:
                raise ServerUnavailable("no certificates were made for this run")
            env = self.tls.server_env()
        return ServerProcess(
            kind, proto, self.log_dir, name=name, sockserve_src=self.sockserve_src(name), env=env
        )


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


def _run_loadgen_mode(
    cell: Cell, kind: str, ctx: Context, mode: str, *, tls: bool = False
) -> dict[str, Any]:
    """pingpong, churn, burst, udp (and TLS pingpong, churn): one load run between two
    /proc samples."""
    p = cell.params
    proto = "udp" if mode == "udp" else "tls" if tls else "tcp"
    options: dict[str, Any] = {"conns": p["conns"], "size": p["size"]}
    if mode != "udp":
        # A PROXY kind's connections open with a header, as behind a load balancer.
        options["proxy"] = spec_for(kind).proxy_header or None
    if tls:
        if ctx.tls is None:
            raise ServerUnavailable("no certificates were made for this run")
        options.update(ca=ctx.tls.ca, server_name=ctx.tls.server_name)
        options["resume"] = 1 if p.get("resume") else None
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

        def sample_again() -> None:
            """The connections are up: CPU from here on is the round trips'."""
            nonlocal before
            before = sample_tree(server.pid)

        if p.get("warmup"):
            options["timeout"] = p.get("setup_timeout", 10.0)
            bound += options["timeout"]
        on_ready = sample_again if p.get("warmup") else None
        result = loadgen.run(
            ctx.exe, mode, server.port, bound_s=bound + 2, on_ready=on_ready, **options
        )
        after = sample_tree(server.pid)
        alive = server.alive()
        backlog = server.info.get("backlog")
    metrics = _loadgen_metrics(result)
    metrics.update(_cpu_metrics(before, after, metrics["ops"], _client_cpu(result)))
    metrics["server_alive"] = alive
    metrics["listen_backlog"] = backlog
    if tls:
        metrics.update(_tls_metrics(result.get("tls") or {}))
    if mode == "burst":
        served = metrics["served"]
        metrics["served_fraction"] = served / p["conns"]
        metrics["all_served_s"] = metrics["elapsed_s"] if served == p["conns"] else None
    return metrics


def _tls_metrics(tls: dict[str, Any]) -> dict[str, Any]:
    """What the load generator's TLS sessions reported."""
    return {
        "tls_handshakes": tls.get("handshakes"),
        "tls_resumed": tls.get("resumed"),
        "tls_failures": tls.get("failures"),
        "tls_version": tls.get("version"),
        "tls_cipher": tls.get("cipher"),
        "tls_library": tls.get("library"),
        "tls_first_error": tls.get("first_error") or None,
    }


def run_tls(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """Echo round trips or new connections over TLS, the client verifying the server."""
    return _run_loadgen_mode(cell, kind, ctx, cell.params["mode"], tls=True)


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
    "tls": run_tls,
}


def run_cell(cell: Cell, kind: str, ctx: Context) -> dict[str, Any]:
    """Run ``cell`` against server ``kind``; raises on failure."""
    return RUNNERS[cell.workload](cell, kind, ctx)
