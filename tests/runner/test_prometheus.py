"""A real Prometheus (Debian's package) scrapes ``sockserve run --workers 2 --metrics-bind``.

Its binary runs directly, with a temporary configuration and storage, on
loopback, scraping every second; the test then asks Prometheus's HTTP API
for ``sockserve_connections_accepted_total`` and expects the connections it
made. Outside CI a missing ``prometheus`` skips (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.net import TIMEOUT
from helpers.programs import require_program

from .metrics_support import metrics_port, scrape_until, total
from .support import HANDLER, ask

pytest.importorskip("prometheus_client")

CONNECTIONS = 25


def free_port() -> int:
    """A port nobody listens on now (Prometheus takes a fixed listen address)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def value_of(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None


def start_prometheus(spawn: Callable[..., Any], tmp_path: Path, target: int) -> int:
    binary = require_program("prometheus", "apt-get install prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: sockserve\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    )
    port = free_port()
    prometheus = spawn(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
    )
    prometheus.wait_for(r"Server is ready to receive web requests", timeout=30)
    return port


@pytest.mark.slow
def test_prometheus_scrapes_the_connections_of_both_workers(
    sockserve: Any, spawn: Callable[..., Any], tmp_path: Path
) -> None:
    server = sockserve(
        "run", HANDLER, "--bind", "127.0.0.1:0", "--workers", "2", "--metrics-bind", "127.0.0.1:0"
    )
    port, mport = server.port(), metrics_port(server)
    prometheus = start_prometheus(spawn, tmp_path, mport)
    for _ in range(CONNECTIONS):
        ask(port)
    # The workers have published (our own scrape sees them all)...
    scrape_until(mport, lambda s: total(s, "sockserve_connections_accepted_total") >= CONNECTIONS)
    # ...and Prometheus, scraping every second, stores what it scraped.
    expr = "sum(sockserve_connections_accepted_total)"
    deadline = time.monotonic() + 30
    seen = value_of(query(prometheus, expr))
    while seen != CONNECTIONS and time.monotonic() < deadline:
        time.sleep(0.5)  # Prometheus's next scrape: nothing to wait on but its clock
        seen = value_of(query(prometheus, expr))
    assert seen == CONNECTIONS
    assert value_of(query(prometheus, 'up{job="sockserve"}')) == 1
    assert value_of(query(prometheus, "sum(sockserve_worker_processes)")) == 2
    count = value_of(query(prometheus, "sum(sockserve_connection_duration_seconds_count)"))
    assert count == CONNECTIONS
    assert server.stop() == 0
