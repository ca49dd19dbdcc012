"""Behind a proxy, the limits and hooks judge the real client; the header has a deadline.

Per-IP limits, allow/deny, ``verify_request`` and the access log all see the
client the PROXY header names, not the load balancer; a trusted peer that
sends no header, or sends it too slowly, is cut at ``proxy_header_timeout``.
Over every strategy.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.clients import closed_by_peer, connect, short_tempdir
from sockserve.protocols.proxy import encode_v1, encode_v2
from sockserve.testing import serving

from ._proxy_support import (
    CONCURRENT,
    HOLD,
    KINDS,
    ask,
    drip,
    make_server,
    read_report,
    waits_for,
)

SERVICE = ("198.51.100.1", 7000)


def header(ip: str, port: int = 50000, version: str = "v1") -> bytes:
    encode = encode_v1 if version == "v1" else encode_v2
    return encode((ip, port), SERVICE)


@contextlib.contextmanager
def held(address: Any, data: bytes) -> Iterator[socket.socket]:
    """A connection whose handler answered and now waits for its next line."""
    with connect(address) as sock:
        sock.sendall(data + HOLD)
        yield sock


@pytest.mark.parametrize("kind", CONCURRENT)
def test_the_per_ip_limit_counts_real_clients_not_the_proxy(kind: str) -> None:
    """Three connections from one proxy: two real clients fit, a second of one does not."""
    server = make_server(kind, proxy_protocol="auto", max_connections_per_ip=1)
    address = server.server_address
    # Connected (headers sent) before the server accepts: every header is
    # there at accept, where the parent reads it, whatever the strategy.
    with (
        held(address, header("192.0.2.1")) as first,
        held(address, header("192.0.2.2")) as other,
        connect(address) as again,
    ):
        again.sendall(header("192.0.2.1", 50001) + b"hello\n")
        with serving(server):
            assert read_report(first)["client"][0] == "192.0.2.1"
            assert read_report(other)["client"][0] == "192.0.2.2"
            assert closed_by_peer(again) in ("eof", "reset")
            waits_for(server, lambda st: st.rejected == {"max_connections_per_ip": 1})
            assert server.stats().accepted == 2
            first.sendall(b"bye\n")
            other.sendall(b"bye\n")
            assert read_report(first)["line"] == "bye\n"
            read_report(other)
            # The real client's slot is free again once its first connection ended.
            waits_for(server, lambda st: st.active == 0)
            report = ask(address, header("192.0.2.1", 50002) + b"hello\n")
            assert report["client"][0] == "192.0.2.1"


@pytest.mark.parametrize("kind", [k for k in CONCURRENT if k != "fork"])
def test_the_per_ip_limit_when_headers_come_late(kind: str) -> None:
    """Headers read after the accept (by the preparer or the task) move the count too."""
    server = make_server(kind, proxy_protocol="v2", max_connections_per_ip=1)
    address = server.server_address
    with serving(server), connect(address) as first, connect(address) as again:
        waits_for(server, lambda st: st.accepted == 2)  # both admitted from the proxy's address
        first.sendall(header("192.0.2.1", version="v2") + HOLD)
        assert read_report(first)["client"][0] == "192.0.2.1"
        again.sendall(header("192.0.2.1", 50001, "v2") + b"hello\n")
        assert closed_by_peer(again) in ("eof", "reset")
        waits_for(server, lambda st: st.rejected == {"max_connections_per_ip": 1})
        first.sendall(b"bye\n")
        read_report(first)


@pytest.mark.parametrize("kind", KINDS)
def test_allow_and_deny_judge_the_real_client(kind: str) -> None:
    # Loopback itself is denied: only the client behind the header is judged.
    server = make_server(
        kind, proxy_protocol="v1", allow=["192.0.2.0/24"], deny=["192.0.2.66/32", "127.0.0.0/8"]
    )
    address = server.server_address
    with serving(server):
        assert ask(address, header("192.0.2.1") + b"in\n")["client"][0] == "192.0.2.1"
        with connect(address) as denied:
            denied.sendall(header("192.0.2.66") + b"in\n")
            assert closed_by_peer(denied) in ("eof", "reset")
        with connect(address) as outside:
            outside.sendall(header("203.0.113.5") + b"in\n")
            assert closed_by_peer(outside) in ("eof", "reset")
        waits_for(server, lambda st: st.rejected == {"deny": 1, "not_allowed": 1})


@pytest.mark.parametrize("kind", KINDS)
def test_verify_request_sees_the_real_client(kind: str) -> None:
    probe = make_server(kind, proxy_protocol="v1", bind_and_activate=False)
    handler = probe.RequestHandlerClass
    probe.server_close()

    class Verifying(type(probe)):  # type: ignore[misc]
        def verify_request(self, request: Any, client_address: Any) -> bool:
            return bool(client_address[0] != "192.0.2.13")

    extra = {"event_loop": "asyncio"} if kind == "async" else {}
    if kind == "pool-readable":
        extra["dispatch"] = "readable"
    server = Verifying(("127.0.0.1", 0), handler, proxy_protocol="v1", **extra)
    with serving(server):
        assert ask(server.server_address, header("192.0.2.1") + b"ok\n")["line"] == "ok\n"
        with connect(server.server_address) as sock:
            sock.sendall(header("192.0.2.13") + b"no\n")
            assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(server, lambda st: st.denied == 1)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "fork"])  # a child logs in its process
def test_the_access_log_names_the_real_client(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server(kind, proxy_protocol="v2", access_log=True)
    with caplog.at_level(logging.INFO, logger="sockserve.access"), serving(server):
        ask(server.server_address, header("192.0.2.44", 4444, "v2") + b"hi\n")
        waits_for(server, lambda st: st.completed == 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "sockserve.access"]
    assert len(lines) == 1 and lines[0].startswith("192.0.2.44:4444 ok"), lines


@pytest.mark.parametrize("kind", KINDS)
def test_a_silent_trusted_peer_is_cut_at_the_header_timeout(kind: str) -> None:
    server = make_server(kind, proxy_protocol="auto", proxy_header_timeout=0.3)
    with serving(server), connect(server.server_address) as sock:
        assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(server, lambda st: st.step_failures == {"proxy:timeout": 1} and st.timed_out == 1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_slowloris_trusted_peer_is_cut_at_the_header_timeout(kind: str) -> None:
    """A byte every 50 ms keeps the peer from ever being idle; the deadline still holds."""
    long_header = encode_v1(("2001:db8:1:2:3:4:5:6", 65000, 0, 0), ("2001:db8:9:8:7:6:5:4", 7000))
    server = make_server(kind, proxy_protocol="v1", proxy_header_timeout=0.3)
    stop = threading.Event()
    with serving(server), connect(server.server_address) as sock:
        sender = drip(sock, long_header, stop)
        try:
            assert closed_by_peer(sock) in ("eof", "reset")
        finally:
            stop.set()
            sender.join()
        waits_for(server, lambda st: st.step_failures == {"proxy:timeout": 1})


@pytest.mark.parametrize("kind", KINDS)
def test_a_unix_listener_trusts_its_peers(kind: str) -> None:
    """On a Unix socket every peer must send the header (the file's mode decides who connects)."""
    with short_tempdir() as tmp:
        path = f"{tmp}/s"
        server = make_server(kind, address=path, proxy_protocol="auto")
        with serving(server):
            report = ask(path, header("192.0.2.8") + b"x\n")
            assert report["client"] == ["192.0.2.8", 50000]
            assert report["peer"] == ""
            with connect(path) as sock:
                sock.sendall(b"no header\n")
                assert closed_by_peer(sock) in ("eof", "reset")
            waits_for(server, lambda st: st.step_failures == {"proxy:missing": 1})
