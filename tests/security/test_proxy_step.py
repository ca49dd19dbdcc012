"""The PROXY header step over every strategy: the real client, the bytes after the header, trust.

Each test runs over inline, threads, pool, pool with ``dispatch="readable"``,
fork and async servers; handlers answer with a JSON report of what they saw
(``_proxy_support``), so forked children report through the socket too.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Any

import pytest

from helpers.clients import closed_by_peer, connect
from sockserve.protocols.proxy import Command, encode_v1, encode_v2
from sockserve.testing import serving

from ._proxy_support import (
    HOLD,
    KINDS,
    AsyncReporter,
    RecvReporter,
    ask,
    make_server,
    read_report,
    trickle,
    waits_for,
)

REAL = ("192.0.2.10", 40123)
SERVICE = ("198.51.100.1", 7000)
HEADERS = {
    "v1": encode_v1(REAL, SERVICE),
    "v2": encode_v2(REAL, SERVICE),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("mode", "version"), [("v1", "v1"), ("v2", "v2"), ("auto", "v1"), ("auto", "v2")]
)
def test_the_handler_sees_the_real_client_and_the_bytes_after_the_header(
    kind: str, mode: str, version: str
) -> None:
    server = make_server(kind, proxy_protocol=mode)
    with serving(server):
        # Header and application data in one segment, as load balancers send them.
        report = ask(server.server_address, HEADERS[version] + b"hello\n")
    assert report["client"] == list(REAL)
    assert report["peer"][0] == "127.0.0.1"
    assert report["line"] == "hello\n"
    assert report["proxy"]["version"] == int(version[1])
    assert report["proxy"]["command"] == "PROXY"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_header_sent_one_byte_at_a_time(kind: str, version: str) -> None:
    server = make_server(kind, proxy_protocol="auto")
    with serving(server), connect(server.server_address) as sock:
        sender = trickle(sock, HEADERS[version] + b"hello\n")
        report = read_report(sock)
        sender.join()
    assert report["client"] == list(REAL)
    assert report["line"] == "hello\n"
    assert server.stats().step_failures == {}


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "async"])
def test_a_stdlib_style_handler_reads_the_data_with_request_recv(kind: str) -> None:
    """Bytes after the header stay in the socket: ``self.request.recv`` gets them as sent."""
    server = make_server(kind, RecvReporter, proxy_protocol="v2")
    with serving(server):
        report = ask(server.server_address, HEADERS["v2"] + b"\x00\r PROXY binary\n")
    assert report["client"] == list(REAL)
    assert report["line"] == "\x00\r PROXY binary\n"


def test_an_async_handler_reads_the_data_from_its_stream() -> None:
    server = make_server("async", AsyncReporter, proxy_protocol="v1")
    with serving(server):
        report = ask(server.server_address, HEADERS["v1"] + b"PROXY is data now\n")
    assert report["client"] == list(REAL)
    assert report["line"] == "PROXY is data now\n"


@pytest.mark.parametrize("kind", KINDS)
def test_an_untrusted_peer_cannot_forge_its_address(kind: str) -> None:
    """Only listed proxies are believed: anyone else's header is application data."""
    server = make_server(kind, proxy_protocol="auto", proxy_trusted=["192.0.2.200/32"])
    forged = encode_v1(("203.0.113.66", 1), SERVICE)
    with serving(server):
        report = ask(server.server_address, forged + b"hello\n")
    assert report["client"][0] == "127.0.0.1"
    assert report["line"] == forged.decode()  # the header, read by the handler as a line
    assert report["proxy"] is None
    stats = server.stats()
    assert stats.step_failures == {} and stats.rejected == {}


@pytest.mark.parametrize("kind", KINDS)
def test_an_untrusted_peer_is_refused_when_asked(kind: str) -> None:
    server = make_server(
        kind, proxy_protocol="v1", proxy_trusted=["192.0.2.200/32"], proxy_untrusted="refuse"
    )
    with serving(server):
        with connect(server.server_address) as sock:
            sock.sendall(HEADERS["v1"] + b"hello\n")
            assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(server, lambda st: st.rejected == {"proxy_untrusted": 1})
        assert server.stats().accepted == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("sent", "failure"),
    [
        (b"hello\n", "proxy:missing"),
        (b"GET / HTTP/1.1\r\n\r\n", "proxy:missing"),
        (b"PROXY TCP4 999.1.1.1 1.1.1.1 1 1\r\n", "proxy:malformed"),
        (HEADERS["v2"], "proxy:malformed"),  # a v1 listener
    ],
)
def test_a_trusted_peer_without_a_valid_header_is_failed_and_counted(
    kind: str, sent: bytes, failure: str
) -> None:
    server = make_server(kind, proxy_protocol="v1")
    with serving(server):
        with connect(server.server_address) as sock:
            sock.sendall(sent + b"more\n")
            assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(server, lambda st: st.step_failures == {failure: 1} and st.completed == 1)
        assert server.stats().peer_errors == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_peer_that_closes_inside_the_header_is_counted_truncated(kind: str) -> None:
    server = make_server(kind, proxy_protocol="v2")
    with serving(server):
        with connect(server.server_address) as sock:
            sock.sendall(HEADERS["v2"][:20])
            sock.shutdown(socket.SHUT_WR)
            assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(server, lambda st: st.step_failures == {"proxy:truncated": 1})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "header",
    [
        encode_v2(command=Command.LOCAL),
        encode_v2(REAL, SERVICE, command=Command.LOCAL),  # LOCAL: addresses ignored
        encode_v1(),  # PROXY UNKNOWN
    ],
    ids=["local", "local-with-addresses", "v1-unknown"],
)
def test_health_checks_keep_the_proxys_address_and_are_no_error(kind: str, header: bytes) -> None:
    server = make_server(kind, proxy_protocol="auto")
    with serving(server):
        report = ask(server.server_address, header + b"check\n")
        waits_for(server, lambda st: st.completed == 1)
        stats = server.stats()
    assert report["client"][0] == "127.0.0.1"
    assert report["client"] == report["peer"]
    assert report["proxy"]["command"] in ("LOCAL", "PROXY")
    assert report["line"] == "check\n"
    assert stats.step_failures == {} and stats.peer_errors == 0 and stats.handler_errors == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_connect_and_close_health_check_ends_quietly(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A trusted peer that sends nothing and closes: no handler, no log line, no error."""
    server = make_server(kind, proxy_protocol="auto")
    # Closed before the server accepts them: a forked child would otherwise hold
    # a copy of a client socket still open in this process, and see no end.
    for _ in range(3):
        with connect(server.server_address):
            pass
    with caplog.at_level(logging.DEBUG, logger="sockserve"), serving(server):
        waits_for(server, lambda st: st.completed == 3)
        stats = server.stats()
    assert stats.step_failures == {} and stats.rejected == {}
    assert (stats.peer_errors, stats.handler_errors, stats.disconnects, stats.timed_out) == (
        0,
        0,
        0,
        0,
    )
    assert [r for r in caplog.records if r.name == "sockserve.server"] == []


# Not fork: the child holds a copy of the test's client socket, so closing it resets nothing.
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "fork"])
def test_a_health_check_reset_while_its_handler_runs_is_no_error(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """HAProxy resets its check connections whenever it likes: for a LOCAL one, that is fine."""
    server = make_server(kind, proxy_protocol="v2")
    with caplog.at_level(logging.DEBUG, logger="sockserve"), serving(server):
        with connect(server.server_address) as sock:
            sock.sendall(encode_v2(command=Command.LOCAL) + HOLD)
            assert read_report(sock)["proxy"]["command"] == "LOCAL"  # the handler runs
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        waits_for(server, lambda st: st.completed == 1)
        stats = server.stats()
    assert (stats.disconnects, stats.handler_errors, stats.peer_errors) == (0, 0, 0)
    assert [r for r in caplog.records if r.name == "sockserve.server"] == []


@pytest.mark.parametrize("kind", KINDS)
def test_connection_info_exposes_the_tlvs(kind: str) -> None:
    header = encode_v2(
        REAL,
        SERVICE,
        authority="api.example.com",
        unique_id=b"\x01\x02",
        tlvs=[(0xEA, b"vpce-0abc")],
        crc32c=True,
    )
    server = make_server(kind, proxy_protocol="v2")
    with serving(server):
        report = ask(server.server_address, header + b"hi\n")
    proxy: dict[str, Any] = report["proxy"]
    assert proxy["authority"] == "api.example.com"
    assert proxy["tlvs"]["234"] == b"vpce-0abc".hex()
    assert proxy["tlvs"]["5"] == "0102"


@pytest.mark.parametrize("kind", KINDS)
def test_ipv6_real_clients(kind: str) -> None:
    real6 = ("2001:db8::7", 5555, 0, 0)
    server = make_server(kind, proxy_protocol="auto")
    with serving(server):
        v1 = ask(server.server_address, encode_v1(real6, ("2001:db8::1", 80)) + b"a\n")
        v2 = ask(server.server_address, encode_v2(real6, ("2001:db8::1", 80)) + b"b\n")
    assert v1["client"] == v2["client"] == list(real6)


@pytest.mark.parametrize("kind", ["threads", "async"])
def test_proxy_protocol_off_reads_no_header(kind: str) -> None:
    server = make_server(kind)
    with serving(server):
        report = ask(server.server_address, HEADERS["v1"] + b"x\n")
    assert report["client"][0] == "127.0.0.1"
    assert report["line"] == HEADERS["v1"].decode()


def test_the_step_comes_before_access_control() -> None:
    from sockserve.security.access import AccessStep
    from sockserve.security.proxy import ProxyHeaderStep

    server = make_server("threads", proxy_protocol="v1", deny=["10.0.0.0/8"])
    try:
        steps = server._pipeline.steps
        assert [type(s) for s in steps] == [ProxyHeaderStep, AccessStep]
    finally:
        server.server_close()


def _preparer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-prepare")]


def test_a_late_header_with_a_free_worker_is_read_on_that_worker() -> None:
    """PROXY with ``dispatch="auto"`` (the pool's default): a header not there yet at
    the accept goes straight to a free worker, never through the preparer thread."""
    before = _preparer_threads()
    server = make_server("pool", proxy_protocol="v1")
    with serving(server), connect(server.server_address) as sock:
        waits_for(server, lambda st: st.accepted == 1)  # accepted before a byte was sent
        sock.sendall(HEADERS["v1"] + b"late\n")
        report = read_report(sock)
        assert _preparer_threads() == before
    assert report["client"] == list(REAL)
    assert report["line"] == "late\n"


def test_a_late_header_with_no_free_worker_waits_without_a_worker() -> None:
    """With every worker busy, the same connection is held by the preparer (no worker
    waits for its header or its first bytes) and served once a worker frees up."""
    server = make_server("pool", proxy_protocol="v1", max_workers=1)
    with serving(server), connect(server.server_address) as busy:
        busy.sendall(HEADERS["v1"] + HOLD)
        assert read_report(busy)["line"] == HOLD.decode()  # the one worker now waits on it
        with connect(server.server_address) as late:
            waits_for(server, lambda st: st.preparing == 1)
            late.sendall(HEADERS["v1"] + b"second\n")
            busy.close()  # frees the worker
            report = read_report(late)
    assert report["line"] == "second\n"
    assert report["client"] == list(REAL)
