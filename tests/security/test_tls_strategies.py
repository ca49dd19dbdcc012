"""TLS on every stream server, seen by Python's own ssl client (a verifying one).

Each strategy (inline, thread per connection, fork, pool, async; TCP and
Unix sockets) serves TLS, lets its handler see the session through
``server.connection_info(self.request).tls``, ends with a ``close_notify``
(the client reads a clean end, not ``SSLEOFError``), keeps ``idle_timeout``
on the TLS socket, and takes a new context for new connections.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from typing import Any

import pytest

from helpers.clients import short_tempdir
from helpers.net import TIMEOUT, wait_until
from sockserve.security.tls import server_context
from sockserve.testing import serving

from .tls_kit import (
    HOST,
    PKI,
    TCP_KINDS,
    UNIX_KINDS,
    ask,
    ask_info,
    make_server,
    raw_connect,
    server_says_goodbye,
    tls_client,
)

LOCAL = ("127.0.0.1", 0)
IDLE = 0.3


def _address(kind: str, directory: str) -> Any:
    return os.path.join(directory, "tls.sock") if "Unix" in kind else LOCAL


@pytest.mark.parametrize("kind", TCP_KINDS + UNIX_KINDS)
def test_every_strategy_serves_tls_and_ends_with_close_notify(pki: PKI, kind: str) -> None:
    with short_tempdir() as directory:
        server = make_server(kind, _address(kind, directory), ssl_context=pki.context())
        with serving(server):
            with tls_client(server.server_address, pki.client()) as client:
                assert ask(client, b"hello over tls\n") == b"hello over tls\n"
                info = ask_info(client)
                assert info["version"] == client.version() == "TLSv1.3"
                assert info["cipher"] == client.cipher()[0]
                assert info["server_name"] == HOST
                assert server_says_goodbye(client) == "close_notify"
            assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, TIMEOUT)
            stats = server.stats()
        assert stats.step_failures == {}
        assert stats.handler_errors == stats.peer_errors == stats.timed_out == 0


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_sni_alpn_version_cipher_and_client_certificate_reach_the_handler(
    pki: PKI, kind: str
) -> None:
    context = pki.context(alpn=["h2", "http/1.1"], cert_reqs="optional", ca_certs=str(pki.ca_file))
    client_cert = pki.ca.issue_cert("client.example.org", common_name="tls-test-client")
    server = make_server(kind, LOCAL, ssl_context=context)
    with serving(server):
        client_context = pki.client(cert=client_cert, alpn=["http/1.1", "h2"])
        with tls_client(server.server_address, client_context, "127.0.0.1") as client:
            info = ask_info(client)
            assert client.selected_alpn_protocol() == "h2"  # the server's preference
            server_cert = client.getpeercert(binary_form=True)
            assert server_says_goodbye(client) == "close_notify"
        assert info["alpn"] == "h2"
        assert info["server_name"] is None  # an IP address is never sent as SNI
        assert info["peer_subject"]["commonName"] == "tls-test-client"
        assert info["peer_der"] > 0 and server_cert
        # TLS 1.2, by the client's choice: version and cipher follow.
        tls12 = pki.client()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        tls12.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with tls_client(server.server_address, tls12, "localhost") as client:
            info = ask_info(client)
            assert server_says_goodbye(client) == "close_notify"
        assert info["version"] == "TLSv1.2"
        assert info["cipher"] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        assert info["server_name"] == "localhost"
        assert info["peer_subject"] is None  # optional, and this client sent none


@pytest.mark.parametrize("kind", TCP_KINDS + UNIX_KINDS)
def test_idle_timeout_ends_an_idle_tls_connection(pki: PKI, kind: str) -> None:
    """The kernel's receive timeout does not end an SSLSocket read: the handshake step
    gives the socket a Python-level one (the async strategy keeps its own)."""
    with short_tempdir() as directory:
        server = make_server(
            kind, _address(kind, directory), ssl_context=pki.context(), idle_timeout=IDLE
        )
        with serving(server):
            with tls_client(server.server_address, pki.client()) as client:
                assert ask(client, b"then silence\n") == b"then silence\n"
                client.settimeout(IDLE + TIMEOUT)
                try:
                    end = client.recv(100)
                except ssl.SSLEOFError:
                    end = b"eof without close_notify"
            assert server.wait_for(lambda st: st.timed_out == 1 and st.active == 0, TIMEOUT)
            stats = server.stats()
        assert stats.step_failures == {} and stats.handler_errors == 0
    # The sync strategies end a timed-out connection as any other (close_notify);
    # the async one aborts its transport, as it does for a plain timed-out connection.
    expected = b"eof without close_notify" if kind.startswith("Async") else b""
    assert end == expected


def _der(leaf: Any) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


@pytest.mark.parametrize("kind", ["TCPServer", "ThreadPoolTCPServer", "AsyncTCPServer"])
def test_a_new_context_serves_new_connections(pki: PKI, kind: str) -> None:
    """``server.ssl_context = new``: how a program rotates its certificate."""
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    renewed = pki.issue(HOST, "127.0.0.1")
    with serving(server):
        with tls_client(server.server_address, pki.client()) as client:
            assert client.getpeercert(binary_form=True) == _der(pki.server)
            assert server_says_goodbye(client) == "close_notify"
        server.ssl_context = pki.context(renewed)
        with tls_client(server.server_address, pki.client()) as client:
            assert client.getpeercert(binary_form=True) == _der(renewed)
            assert server_says_goodbye(client) == "close_notify"


@pytest.mark.parametrize("kind", ["ThreadPoolTCPServer", "AsyncTCPServer"])
def test_connections_in_flight_keep_their_session_across_a_swap(pki: PKI, kind: str) -> None:
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    renewed = pki.issue(HOST, "127.0.0.1")
    with serving(server), tls_client(server.server_address, pki.client()) as old:
        assert ask(old, b"before\n") == b"before\n"
        server.ssl_context = pki.context(renewed)
        with tls_client(server.server_address, pki.client()) as new:
            assert new.getpeercert(binary_form=True) == _der(renewed)
            assert ask(new, b"new\n") == b"new\n"
        assert ask(old, b"still served\n") == b"still served\n"
        assert old.getpeercert(binary_form=True) == _der(pki.server)
        assert server_says_goodbye(old) == "close_notify"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("goodbye", ["close_notify", "eof"])
def test_an_async_tls_connection_the_client_ends_logs_nothing(
    pki: PKI, loop: str, goodbye: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The stream keeps a plain connection half-open at EOF; over TLS (no half-close)
    asking for that made the event loop's TLS log a warning per connection."""
    server = make_server("AsyncTCPServer", LOCAL, ssl_context=pki.context(), event_loop=loop)
    with caplog.at_level(logging.DEBUG), serving(server):
        for _ in range(3):
            with tls_client(server.server_address, pki.client()) as client:
                assert ask(client, b"bye soon\n") == b"bye soon\n"
                if goodbye == "close_notify":
                    client.unwrap().close()  # sends ours, waits for the server's
        assert server.wait_for(lambda st: st.completed == 3 and st.active == 0, TIMEOUT)
        stats = server.stats()
    assert stats.handler_errors == stats.peer_errors == 0 and stats.step_failures == {}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_setting_ssl_context_on_a_running_server_turns_tls_on_and_off(pki: PKI, kind: str) -> None:
    """The attribute, not only the constructor argument: new connections follow it."""
    server = make_server(kind, LOCAL)
    with serving(server):
        with raw_connect(server.server_address) as plain:
            assert ask(plain, b"info\n") == b'{"tls": null}\n'
            assert ask(plain, b"quit\n") == b""
        server.ssl_context = pki.context()
        with tls_client(server.server_address, pki.client()) as client:
            assert ask_info(client)["version"] == "TLSv1.3"
            assert server_says_goodbye(client) == "close_notify"
        server.ssl_context = None
        with raw_connect(server.server_address) as plain:
            assert ask(plain, b"info\n") == b'{"tls": null}\n'
            assert ask(plain, b"quit\n") == b""
        assert server.wait_for(lambda st: st.completed == 3 and st.active == 0, TIMEOUT)
        assert server.stats().step_failures == {}


@pytest.mark.parametrize("kind", ["ThreadPoolTCPServer", "AsyncTCPServer"])
def test_the_readme_rotation_recipe_swaps_the_certificate_from_a_turn_callback(
    pki: PKI, kind: str
) -> None:
    """README, "Rotating a certificate": an Event set (by a signal handler there), the
    context rebuilt by a turn callback of the serving loop; a broken file keeps the old."""
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    renewed = threading.Event()
    files: dict[str, Any] = {"leaf": None}
    outcomes: list[str] = []

    def rotate_if_renewed() -> None:
        if renewed.is_set():
            renewed.clear()
            try:
                if files["leaf"] is None:  # the renewed files are not there (yet)
                    server.ssl_context = server_context("/nonexistent/fullchain.pem")
                else:
                    server.ssl_context = pki.context(files["leaf"])
                outcomes.append("rotated")
            except (OSError, ValueError) as exc:
                outcomes.append(type(exc).__name__)

    server.add_turn_callback(rotate_if_renewed)
    with serving(server, poll_interval=0.05):
        renewed.set()  # nothing renewed yet: a failure, the old context stays
        server.wake_loop()
        with tls_client(server.server_address, pki.client()) as client:
            assert client.getpeercert(binary_form=True) == _der(pki.server)
        files["leaf"] = pki.issue(HOST, "127.0.0.1")
        renewed.set()
        server.wake_loop()
        assert wait_until(lambda: outcomes[-1:] == ["rotated"]), outcomes
        with tls_client(server.server_address, pki.client()) as client:
            assert client.getpeercert(binary_form=True) == _der(files["leaf"])
    assert outcomes[0] == "FileNotFoundError" and outcomes[-1] == "rotated"
