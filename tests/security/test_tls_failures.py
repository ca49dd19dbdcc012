"""TLS handshakes that fail, and clients that never start one: the peer's fault, counted.

A failure is sorted into a kind and counted in ``stats().step_failures`` as
``tls:KIND``, ends its connection as ``peer-error`` (``timeout`` for a
handshake that never finished), is logged once per kind through the rate
limiter, never with a traceback, never as a handler error; and the next
client is served as if nothing happened.
"""

from __future__ import annotations

import gc
import logging
import socket
import ssl
import struct
from typing import Any

import pytest

from helpers.clients import closed_by_peer
from helpers.net import TIMEOUT
from sockserve.testing import serving

from .tls_kit import (
    HOST,
    PKI,
    TCP_KINDS,
    ask,
    ask_info,
    make_server,
    raw_connect,
    server_says_goodbye,
    tls_client,
)

LOCAL = ("127.0.0.1", 0)
#: The strategies whose log lines this process sees (a forked child logs in the child).
IN_PROCESS_KINDS = [kind for kind in TCP_KINDS if not kind.startswith("Forking")]


def _handshake_fails(address: Any, context: ssl.SSLContext, hostname: str = HOST) -> BaseException:
    """Connect and exchange a line; return what the client raised (it must raise)."""
    try:
        with tls_client(address, context, hostname) as client:
            # TLS 1.3: a client certificate is checked after the client's side
            # of the handshake is done, so the refusal shows on the first read.
            ask(client, b"anyone?\n")
    except (ssl.SSLError, OSError) as exc:
        return exc
    raise AssertionError("the handshake should have failed")


def _served_next(server: Any, pki: PKI) -> None:
    with tls_client(server.server_address, pki.client()) as client:
        assert ask(client, b"next\n") == b"next\n"
        assert server_says_goodbye(client) == "close_notify"


def _failures(server: Any, expected: dict[str, int], completed: int) -> Any:
    assert server.wait_for(lambda st: st.completed == completed and st.active == 0, TIMEOUT), (
        server.stats()
    )
    stats = server.stats()
    assert stats.step_failures == expected
    assert stats.handler_errors == 0
    return stats


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_an_expired_server_certificate_is_refused_by_the_client(pki: PKI, kind: str) -> None:
    expired = pki.issue(HOST, "127.0.0.1", expired=True)
    server = make_server(kind, LOCAL, ssl_context=pki.context(expired))
    with serving(server):
        exc = _handshake_fails(server.server_address, pki.client())
        assert isinstance(exc, ssl.SSLCertVerificationError)
        assert exc.verify_message == "certificate has expired"
        # The client sends its alert: the server's handshake fails with it.
        stats = _failures(server, {"tls:certificate": 1}, completed=1)
        assert stats.peer_errors == 1


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_a_wrong_host_name_is_refused_by_the_client(pki: PKI, kind: str) -> None:
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    with serving(server):
        exc = _handshake_fails(server.server_address, pki.client(), "www.example.org")
        assert isinstance(exc, ssl.SSLCertVerificationError)
        assert "Hostname mismatch" in str(exc.verify_message)
        stats = _failures(server, {"tls:certificate": 1}, completed=1)
        assert stats.peer_errors == 1
        _served_next(server, pki)


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_mutual_tls_serves_a_good_client_certificate_and_refuses_the_others(
    pki: PKI, kind: str
) -> None:
    context = pki.context(cert_reqs="required", ca_certs=str(pki.ca_file))
    good = pki.ca.issue_cert("client.example.org", common_name="good-client")
    stranger = pki.issue("client.example.org", ca=type(pki.ca)())  # another CA's
    server = make_server(kind, LOCAL, ssl_context=context)
    with serving(server):
        with tls_client(server.server_address, pki.client(cert=good)) as client:
            assert ask_info(client)["peer_subject"]["commonName"] == "good-client"
            assert server_says_goodbye(client) == "close_notify"
        for refused in (pki.client(cert=stranger), pki.client()):
            exc = _handshake_fails(server.server_address, refused)
            assert not isinstance(exc, ssl.SSLCertVerificationError)  # the server refused
        stats = _failures(server, {"tls:certificate": 2}, completed=3)
        assert stats.peer_errors == 2


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_plain_http_to_the_tls_port_ends_cleanly_and_the_next_client_is_served(
    pki: PKI, kind: str
) -> None:
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    with serving(server):
        with raw_connect(server.server_address) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert closed_by_peer(plain) in ("eof", "reset")
        stats = _failures(server, {"tls:not-tls": 1}, completed=1)
        assert stats.peer_errors == 1
        _served_next(server, pki)


@pytest.mark.parametrize("kind", IN_PROCESS_KINDS)
def test_failures_are_logged_once_per_kind_without_a_traceback(
    pki: PKI, kind: str, server_log: pytest.LogCaptureFixture
) -> None:
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    with serving(server):
        for _ in range(5):
            with raw_connect(server.server_address) as plain:
                plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
                closed_by_peer(plain)
        for _ in range(3):
            _handshake_fails(server.server_address, pki.client(), "www.example.org")
        _failures(server, {"tls:not-tls": 5, "tls:certificate": 3}, completed=8)
        _served_next(server, pki)
    lines = [r for r in server_log.records if r.name == "sockserve.server"]
    words = sorted(r.getMessage().split(": ")[1] for r in lines)
    assert words == ["tls:certificate", "tls:not-tls"], [r.getMessage() for r in lines]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in lines)
    assert "Traceback" not in server_log.text


@pytest.mark.parametrize("kind", IN_PROCESS_KINDS)
def test_a_bare_tcp_health_check_counts_as_tls_reset(
    pki: PKI, kind: str, server_log: pytest.LogCaptureFixture
) -> None:
    """A load balancer's TCP check (connect, close; or reset) on a TLS port: counted as
    ``tls:reset``, one line, and the descriptor closed (no ResourceWarning: a reset before
    the handshake once left it to an SSLSocket nobody held)."""
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    with serving(server):
        for _ in range(3):
            raw_connect(server.server_address).close()
        for _ in range(3):
            with raw_connect(server.server_address) as reset:
                reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stats = _failures(server, {"tls:reset": 6}, completed=6)
        assert stats.peer_errors == 6 and stats.disconnects == 0
        _served_next(server, pki)
    gc.collect()  # an SSLSocket left unclosed would warn now (an error under pytest)
    lines = [r for r in server_log.records if r.name == "sockserve.server"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "tls:reset" in lines[0].getMessage() and lines[0].exc_info is None


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ThreadPoolTCPServer", "ThreadingTCPServer", "AsyncTCPServer"])
def test_silent_clients_do_not_stop_a_tls_client_and_are_cut_at_handshake_timeout(
    pki: PKI, kind: str, server_log: pytest.LogCaptureFixture
) -> None:
    """100 connections that never say a word: more than the pool has workers
    (32), none of them holding one; each cut at ``handshake_timeout``."""
    handshake_timeout = 2.0
    server = make_server(
        kind, LOCAL, ssl_context=pki.context(), handshake_timeout=handshake_timeout
    )
    silent: list[socket.socket] = []
    try:
        with serving(server):
            silent.extend(raw_connect(server.server_address) for _ in range(100))
            assert server.wait_for(lambda st: st.accepted == 100, TIMEOUT), server.stats()
            with tls_client(server.server_address, pki.client()) as client:
                assert ask(client, b"served while they wait\n") == b"served while they wait\n"
                # Served before any of the silent ones reached its deadline.
                assert server.stats().step_failures == {}
                assert server_says_goodbye(client) == "close_notify"
            assert server.wait_for(
                lambda st: st.step_failures.get("tls:timeout") == 100 and st.active == 0,
                handshake_timeout + TIMEOUT,
            ), server.stats()
            stats = server.stats()
            for sock in silent:
                assert closed_by_peer(sock) in ("eof", "reset")
    finally:
        for sock in silent:
            sock.close()
    assert stats.timed_out == 100 and stats.completed == 101
    assert stats.handler_errors == stats.peer_errors == 0
    timeouts = [r for r in server_log.records if "no TLS handshake" in r.getMessage()]
    assert len(timeouts) == 1 and timeouts[0].levelno == logging.INFO
    assert timeouts[0].exc_info is None
