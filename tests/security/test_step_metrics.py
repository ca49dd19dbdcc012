"""TLS handshake failures and PROXY header errors as Prometheus metrics, by kind."""

from __future__ import annotations

import pytest

import sockserve
from helpers.clients import closed_by_peer, connect
from helpers.net import TIMEOUT
from sockserve.testing import serving

from .tls_kit import PKI, Echo

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sockserve.observability.metrics import register


def counts(registry: CollectorRegistry, name: str) -> dict[str, float]:
    """The samples of ``name`` by their ``kind`` label."""
    text = generate_latest(registry).decode()
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_plain_bytes_to_a_tls_port_count_as_not_tls(pki: PKI) -> None:
    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Echo, ssl_context=pki.context())
    registry = CollectorRegistry()
    register(server, registry=registry)
    with serving(server), connect(server.server_address) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert closed_by_peer(plain) in ("eof", "reset")
        assert server.wait_for(lambda st: st.completed == 1, TIMEOUT)
        failures = counts(registry, "sockserve_tls_handshake_failures_total")
    assert failures["not-tls"] == 1
    assert sum(failures.values()) == 1
    assert set(failures) >= {"timeout", "certificate", "protocol", "reset", "other"}


def test_a_malformed_proxy_header_counts_as_malformed() -> None:
    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Echo, proxy_protocol="v1")
    registry = CollectorRegistry()
    register(server, registry=registry)
    with serving(server), connect(server.server_address) as client:
        client.sendall(b"PROXY TCP4 not-an-address\r\n")
        assert closed_by_peer(client) in ("eof", "reset")
        assert server.wait_for(lambda st: st.completed == 1, TIMEOUT)
        errors = counts(registry, "sockserve_proxy_header_errors_total")
    assert errors["malformed"] == 1
    assert sum(errors.values()) == 1
