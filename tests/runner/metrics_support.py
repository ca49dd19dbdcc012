"""Scraping a runner's ``--metrics-bind`` endpoint in tests, parsed by prometheus-client."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any

from helpers.net import TIMEOUT

#: The line naming the metrics address (port 0 picks one): the master's, or --workers 0's.
METRICS_AT = r"INFO sockserve\.(?:master|cli): metrics on http://([\d.]+):(\d+)/metrics"


def metrics_port(server: Any) -> int:
    [match] = server.wait_for(METRICS_AT)
    return int(match[2])


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of one GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics: (name, labels) -> value, via prometheus-client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = get(port, "/metrics")
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    """The sum of every sample called ``name`` (over listeners and other labels)."""
    return sum(value for (sample, _), value in samples.items() if sample == name)


def scrape_until(
    port: int,
    predicate: Callable[[dict[tuple[str, frozenset[tuple[str, str]]], float]], bool],
    timeout: float = TIMEOUT,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape until ``predicate`` holds: workers publish their counters once a second,
    and nothing announces it, so this re-reads (bounded) instead of sleeping blindly."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if predicate(samples) or time.monotonic() >= deadline:
            return samples
        time.sleep(0.1)
