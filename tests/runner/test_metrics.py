"""--metrics-bind: /metrics adds up every worker and survives restarts; /healthz, shutdown delay."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import Conn
from helpers.net import TIMEOUT
from helpers.processes import REPO
from sockserve.exitcodes import ExitCode

from .metrics_support import get, metrics_port, scrape, scrape_until, total
from .support import HANDLER, ask

pytest.importorskip("prometheus_client")

BIND = ("--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0")
DASHBOARD = REPO / "deploy" / "grafana" / "sockserve.json"


def accepted(samples: dict[Any, float]) -> float:
    return total(samples, "sockserve_connections_accepted_total")


def ended(samples: dict[Any, float]) -> float:
    """Connections in the duration histogram: an entry is made as a connection ends,
    which may be just after its client had its answer (and after a counter update)."""
    return total(samples, "sockserve_connection_duration_seconds_count")


def test_metrics_add_up_every_worker_with_a_duration_histogram(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "2")
    port, mport = server.port(), metrics_port(server)
    pids = {ask(port) for _ in range(40)}
    samples = scrape_until(mport, lambda s: accepted(s) >= 40 and ended(s) >= 40)
    assert accepted(samples) == 40
    assert len(pids) == 2  # (the kernel spread 40 connections over both workers)
    assert total(samples, "sockserve_connection_duration_seconds_count") == 40
    buckets = [
        (dict(labels)["le"], value)
        for (name, labels), value in samples.items()
        if name == "sockserve_connection_duration_seconds_bucket"
    ]
    assert ("+Inf", 40.0) in buckets and len(buckets) > 10
    # Each connection sent "pid\n" (4 bytes) and got a pid and a newline back.
    assert total(samples, "sockserve_connection_received_bytes_sum") == 40 * 4
    assert total(samples, "sockserve_connection_sent_bytes_count") == 40
    assert total(samples, "sockserve_worker_processes") == 2
    [(_, labels)] = [key for key in samples if key[0] == "sockserve_build_info"]
    assert dict(labels)["worker_class"] == "pool"
    assert dict(labels)["event_loop"] == "none"
    assert total(samples, "sockserve_healthy") == 1
    assert server.stop() == 0


def test_async_workers_record_too_and_name_their_event_loop(sockserve: Any) -> None:
    target = HANDLER.replace(":Handler", ":AsyncHandler")
    server = sockserve("run", target, *BIND, "--workers", "2", "--worker-class", "async")
    port, mport = server.port(), metrics_port(server)
    for _ in range(6):
        ask(port)
    samples = scrape_until(mport, lambda s: accepted(s) >= 6 and ended(s) >= 6)
    assert accepted(samples) == 6
    assert total(samples, "sockserve_connection_duration_seconds_count") == 6
    assert total(samples, "sockserve_connection_received_bytes_sum") == 6 * 4
    [(_, labels)] = [key for key in samples if key[0] == "sockserve_build_info"]
    uvloop = importlib.util.find_spec("uvloop") is not None
    assert dict(labels)["worker_class"] == "async"
    assert dict(labels)["event_loop"] == ("uvloop" if uvloop else "asyncio")
    assert server.stop() == 0


def test_counts_survive_a_killed_worker_and_its_gauges_go_with_it(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "2")
    port, mport = server.port(), metrics_port(server)
    for _ in range(10):
        ask(port)
    held = Conn(port)  # in flight on the victim: an active connection the victim reports
    try:
        victim = int(held.ask("pid"))
        samples = scrape_until(
            mport, lambda s: total(s, "sockserve_connections_active") == 1 and accepted(s) >= 11
        )
        assert total(samples, "sockserve_connections_active") == 1
        mark = server.mark()
        os.kill(victim, signal.SIGKILL)
        server.wait_for(r"worker \d+ started", start=mark)
        samples = scrape_until(mport, lambda s: total(s, "sockserve_worker_restarts_total") >= 1)
    finally:
        held.close()
    assert accepted(samples) == 11  # the dead worker's connections still count...
    assert total(samples, "sockserve_connections_active") == 0  # ...its gauges do not
    assert samples[("sockserve_worker_restarts_total", frozenset({("cause", "killed")}))] == 1
    for _ in range(5):
        ask(port)
    assert accepted(scrape_until(mport, lambda s: accepted(s) >= 16)) == 16
    assert server.stop() == 0


def test_counts_survive_a_reload_and_recycled_workers(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--max-requests", "4")
    port, mport = server.port(), metrics_port(server)
    for _ in range(6):  # the first worker recycles after 4; its replacement serves the rest
        ask(port)
    samples = scrape_until(mport, lambda s: accepted(s) >= 6)
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_for(r"INFO sockserve\.master: reload complete", start=mark)
    ask(port)
    samples = scrape_until(
        mport,
        lambda s: accepted(s) >= 7 and ended(s) >= 7 and total(s, "sockserve_reloads_total") >= 1,
    )
    assert accepted(samples) == 7
    assert total(samples, "sockserve_connection_duration_seconds_count") == 7
    assert samples[("sockserve_reloads_total", frozenset({("result", "ok")}))] == 1
    recycled = ("sockserve_worker_restarts_total", frozenset({("cause", "recycled")}))
    assert samples[recycled] >= 1
    assert server.stop() == 0


def test_a_silent_scraper_does_not_hold_up_the_endpoint(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1")
    mport = metrics_port(server)
    server.port()  # serving: until then /healthz says 503
    with socket.create_connection(("127.0.0.1", mport), timeout=TIMEOUT) as silent:
        assert get(mport, "/healthz") == (200, "ok\n")  # served while the other says nothing
        with socket.create_connection(("127.0.0.1", mport), timeout=TIMEOUT) as flood:
            flood.sendall(b"GET /" + b"x" * 9000)  # no end of headers within 8 KiB
            assert flood.recv(100).startswith(b"HTTP/1.1 431 ")
        silent.sendall(b"POST /metrics HTTP/1.1\r\n\r\n")
        assert silent.recv(100).startswith(b"HTTP/1.1 405 ")
    assert server.stop() == 0


def test_healthz_turns_503_in_the_shutdown_delay_while_clients_are_still_served(
    sockserve: Any,
) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--shutdown-delay", "60")
    port, mport = server.port(), metrics_port(server)
    assert get(mport, "/healthz") == (200, "ok\n")
    assert get(mport, "/nowhere")[0] == 404
    mark = server.mark()
    server.signal(signal.SIGTERM)
    server.wait_for(r"SIGTERM: unready; draining in 60\.0 s", start=mark)
    assert get(mport, "/healthz")[0] == 503
    assert ask(port, "echo still here") == "still here"  # accepting all along
    assert total(scrape(mport), "sockserve_healthy") == 0
    # A second signal does not wait for the delay: the drain starts now.
    assert server.stop(signal.SIGTERM) == 0


def test_the_drain_shows_as_draining_and_unhealthy(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--grace", "30")
    port, mport = server.port(), metrics_port(server)
    held = Conn(port)  # its handler stays in flight: the drain waits for it
    try:
        assert held.ask("echo hi") == "hi"
        assert total(scrape(mport), "sockserve_draining") == 0
        server.signal(signal.SIGTERM)
        samples = scrape_until(mport, lambda s: total(s, "sockserve_draining") == 1)
        assert total(samples, "sockserve_draining") == 1
        assert total(samples, "sockserve_healthy") == 0
        assert get(mport, "/healthz")[0] == 503
    finally:
        held.close()  # the handler returns; the drain ends
    assert server.wait_exit() == 0


def test_without_a_master_the_process_serves_metrics_and_its_shutdown_delay(
    sockserve: Any,
) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "0", "--shutdown-delay", "60")
    port, mport = server.port(), metrics_port(server)
    for _ in range(3):
        ask(port)
    # Read live from the servers (no publishing delay), but a connection's histogram
    # entry is made as it ends, which may come just after its client had its answer.
    samples = scrape_until(mport, lambda s: ended(s) >= 3)
    assert accepted(samples) == 3
    assert total(samples, "sockserve_connection_duration_seconds_count") == 3
    assert total(samples, "sockserve_healthy") == 1
    assert get(mport, "/healthz") == (200, "ok\n")
    mark = server.mark()
    server.signal(signal.SIGTERM)
    server.wait_for(r"received SIGTERM: draining in 60\.0 s", start=mark)
    assert get(mport, "/healthz")[0] == 503
    assert ask(port, "echo still here") == "still here"
    assert server.stop(signal.SIGTERM) == 0


def test_metrics_bind_needs_a_tcp_address(sockserve: Any) -> None:
    for address in ("unix:/tmp/x", "nonsense"):
        server = sockserve("run", HANDLER, "--bind", "127.0.0.1:0", "--metrics-bind", address)
        assert server.wait_exit() == ExitCode.USAGE
        assert re.search(r"metrics_bind = .* \(from --metrics-bind\)", server.describe())


def test_a_metrics_port_in_use_is_a_bind_error(sockserve: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        for workers in ("0", "1"):
            server = sockserve("run", HANDLER, "--bind", "127.0.0.1:0", "--workers", workers,
                               "--metrics-bind", address)  # fmt: skip
            assert server.wait_exit() == ExitCode.BIND
            assert f"cannot serve metrics on {address}" in server.describe()


def dashboard_metrics() -> set[str]:
    """The metric names the Grafana dashboard's queries use."""
    dashboard = json.loads(Path(DASHBOARD).read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 8
    return {name for expr in exprs for name in re.findall(r"\bsockserve_[a-z_]+", expr)}


def test_every_metric_the_grafana_dashboard_queries_is_exposed(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1")
    port, mport = server.port(), metrics_port(server)
    ask(port)
    samples = scrape_until(mport, lambda s: accepted(s) >= 1)
    exposed = {name for name, _ in samples}
    for suffix in ("_bucket", "_count", "_sum"):  # a histogram's series and its name
        exposed |= {name[: -len(suffix)] for name in exposed if name.endswith(suffix)}
    missing = dashboard_metrics() - exposed
    assert not missing, f"the dashboard queries metrics nobody exposes: {sorted(missing)}"
    assert server.stop() == 0
