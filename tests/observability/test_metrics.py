"""register(): servers' counters read at scrape time, per-connection histograms, label sets."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

import sockserve
from helpers.clients import connect, recv_line
from helpers.net import TIMEOUT
from helpers.processes import child_env
from sockserve.testing import serving

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from sockserve.observability.metrics import register  # noqa: E402

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Echo(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


class AsyncEcho(sockserve.AsyncStreamRequestHandler):
    async def handle(self) -> None:
        while line := await self.reader.readline():
            self.writer.write(line)
            await self.writer.drain()


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def echo_once(address: Any, payload: bytes) -> None:
    with connect(address) as client:
        client.sendall(payload)
        assert recv_line(client) == payload


@pytest.mark.parametrize("server_class", ["ThreadPoolTCPServer", "AsyncTCPServer"])
def test_counters_and_histograms_of_two_servers(server_class: str) -> None:
    cls = getattr(sockserve, server_class)
    handler = AsyncEcho if server_class == "AsyncTCPServer" else Echo
    first = cls(("127.0.0.1", 0), handler)
    second = cls(("127.0.0.1", 0), handler)
    registry = CollectorRegistry()
    register(first, second, registry=registry, names=["a", "b"])
    with serving(first), serving(second):
        for _ in range(3):
            echo_once(first.server_address, b"hello\n")
        echo_once(second.server_address, b"x" * 299 + b"\n")
        assert first.wait_for(lambda st: st.completed == 3, TIMEOUT)
        assert second.wait_for(lambda st: st.completed == 1, TIMEOUT)
        samples = scrape(registry)
    assert value(samples, "sockserve_connections_accepted_total", listener="a") == 3
    assert value(samples, "sockserve_connections_accepted_total", listener="b") == 1
    assert value(samples, "sockserve_connection_duration_seconds_count", listener="a") == 3
    assert value(samples, "sockserve_connection_received_bytes_sum", listener="a") == 18
    assert value(samples, "sockserve_connection_sent_bytes_sum", listener="b") == 300
    # 300 bytes: not in the 256 bucket, in the 1024 one.
    bucket = "sockserve_connection_received_bytes_bucket"
    assert value(samples, bucket, listener="b", le="256.0") == 0
    assert value(samples, bucket, listener="b", le="1024.0") == 1
    assert value(samples, "sockserve_connections_active", listener="a") == 0
    worker_class = "async" if server_class == "AsyncTCPServer" else "pool"
    [info] = [labels for name, labels in samples if name == "sockserve_build_info"]
    assert dict(info)["worker_class"] == worker_class
    assert dict(info)["version"] == sockserve.__version__


def test_refusals_by_reason_and_busy_workers() -> None:
    release = threading.Event()

    class Held(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            release.wait(TIMEOUT)

    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Held, max_workers=2, max_connections=1)
    registry = CollectorRegistry()
    register(server, registry=registry)
    label = f"127.0.0.1:{server.server_address[1]}"
    with serving(server), contextlib.ExitStack() as stack:
        stack.enter_context(connect(server.server_address))
        assert server.wait_for(lambda st: st.busy_workers == 1, TIMEOUT)
        refused = stack.enter_context(connect(server.server_address))
        assert server.wait_for(lambda st: sum(st.rejected.values()) == 1, TIMEOUT)
        samples = scrape(registry)
        release.set()
        refused.close()
    reason = {"listener": label, "reason": "max_connections"}
    assert value(samples, "sockserve_connections_refused_total", **reason) == 1
    assert value(samples, "sockserve_pool_workers", listener=label, state="busy") == 1
    assert value(samples, "sockserve_connections_active", listener=label) == 1
    # Every known reason is a series of its own, zeros included; nothing else is.
    reasons = {
        dict(labels)["reason"]
        for name, labels in samples
        if name == "sockserve_connections_refused_total"
    }
    assert "max_connections_per_ip" in reasons and "other" in reasons


def test_timeouts_by_kind() -> None:
    server = sockserve.ThreadPoolTCPServer(
        ("127.0.0.1", 0), Echo, idle_timeout=0.05, dispatch="immediate"
    )
    registry = CollectorRegistry()
    register(server, registry=registry, names=["t"])
    with serving(server), connect(server.server_address) as silent:
        # The handler waits for a line that never comes: its read times out.
        assert server.wait_for(lambda st: st.timed_out == 1, TIMEOUT)
        samples = scrape(registry)
        silent.close()
    timed_out = "sockserve_connections_timed_out_total"
    assert value(samples, timed_out, listener="t", kind="handler") == 1
    for kind in ("first-bytes", "tls", "proxy"):
        assert value(samples, timed_out, listener="t", kind=kind) == 0


def test_a_server_without_a_recorder_records_nothing_per_connection() -> None:
    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Echo)
    registry = CollectorRegistry()
    collector = register(server, registry=registry)
    collector.stop_recording()
    assert server._pipeline.recorder is None
    with serving(server):
        echo_once(server.server_address, b"hi\n")
        assert server.wait_for(lambda st: st.completed == 1, TIMEOUT)
        samples = scrape(registry)
    assert value(samples, "sockserve_connections_accepted_total", listener=collector_label(server))
    assert not [name for name, _ in samples if name.startswith("sockserve_connection_duration")]


def collector_label(server: Any) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


def test_register_rejects_names_that_do_not_match() -> None:
    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Echo)
    try:
        with pytest.raises(ValueError, match="1 server"):
            register(server, registry=CollectorRegistry(), names=["a", "b"])
    finally:
        server.server_close()


def test_the_core_imports_no_prometheus_client() -> None:
    code = (
        "import sys, sockserve, sockserve.cli, sockserve.runner.master, sockserve.runner.worker\n"
        "sockserve.ThreadPoolTCPServer(('127.0.0.1', 0), sockserve.BaseRequestHandler)"
        ".server_close()\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=True, timeout=TIMEOUT)


def test_datagram_servers_record_durations_without_bytes() -> None:
    class Reply(sockserve.DatagramRequestHandler):
        def handle(self) -> None:
            self.wfile.write(self.rfile.read())

    server = sockserve.ThreadPoolUDPServer(("127.0.0.1", 0), Reply)
    registry = CollectorRegistry()
    register(server, registry=registry, names=["udp"])
    with serving(server), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(b"ping", server.server_address)
        assert client.recv(16) == b"ping"
        assert server.wait_for(lambda st: st.completed == 1, TIMEOUT)
        samples = scrape(registry)
    assert value(samples, "sockserve_connection_duration_seconds_count", listener="udp") == 1
    assert value(samples, "sockserve_connection_received_bytes_count", listener="udp") == 0
