"""``openssl s_client`` against sockserve: a TLS client nobody here wrote.

OpenSSL 3 reports a connection that ends without ``close_notify`` as
"unexpected eof while reading" and exits with status 1; a clean end is
status 0 and no error. ``-quiet`` prints only what the server sent, so the
line protocol of ``tls_kit`` can be read back (``info`` shows what the
handler saw of the session). Missing ``openssl`` skips outside CI and fails
in CI (``helpers.programs``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import short_tempdir
from helpers.net import TIMEOUT
from helpers.programs import require_program
from sockserve.testing import serving

from .tls_kit import HOST, PKI, TCP_KINDS, UNIX_KINDS, make_server, run_with_input

LOCAL = ("127.0.0.1", 0)
UNEXPECTED_EOF = "unexpected eof while reading"


def s_client(
    address: Any, pki: PKI, *options: str, lines: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``openssl s_client`` (verifying, SNI ``localhost``) with ``lines`` as its input."""
    openssl = require_program("openssl", "apt-get install openssl")
    where = (
        ["-unix", address]
        if isinstance(address, str)
        else ["-connect", f"{address[0]}:{address[1]}"]
    )
    argv = [openssl, "s_client", *where, "-servername", HOST, "-CAfile", str(pki.ca_file)]
    argv += ["-verify_return_error", "-quiet", "-ign_eof", *options]
    return run_with_input(argv, lines)


def _client_files(pki: PKI, leaf: Any, directory: Path, name: str) -> list[str]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    PKI.write_server(leaf, cert, key)
    return ["-cert", str(cert), "-key", str(key)]


@pytest.mark.parametrize("kind", TCP_KINDS + UNIX_KINDS)
def test_s_client_is_served_with_alpn_and_sees_a_clean_shutdown(pki: PKI, kind: str) -> None:
    with short_tempdir() as directory:
        address = os.path.join(directory, "s.sock") if "Unix" in kind else LOCAL
        context = pki.context(alpn=["h2", "http/1.1"])
        server = make_server(kind, address, ssl_context=context)
        with serving(server):
            done = s_client(
                server.server_address, pki, "-alpn", "h2,http/1.1", lines="hello\ninfo\nquit\n"
            )
            assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, TIMEOUT)
            stats = server.stats()
    assert done.returncode == 0, done.stderr
    assert UNEXPECTED_EOF not in done.stderr  # the server said close_notify
    echoed, info = done.stdout.splitlines()
    assert echoed == "hello"
    info = json.loads(info)
    assert info["alpn"] == "h2" and info["server_name"] == HOST
    assert info["version"] == "TLSv1.3"
    assert stats.step_failures == {} and stats.handler_errors == 0


@pytest.mark.parametrize("kind", ["ThreadPoolTCPServer", "AsyncTCPServer"])
def test_s_client_on_tls_1_2_with_a_chosen_cipher(pki: PKI, kind: str) -> None:
    server = make_server(kind, LOCAL, ssl_context=pki.context())
    with serving(server):
        done = s_client(
            server.server_address,
            pki,
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            lines="info\nquit\n",
        )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["version"] == "TLSv1.2"
    assert info["cipher"] == "ECDHE-ECDSA-CHACHA20-POLY1305"


@pytest.mark.parametrize(
    "kind", ["TCPServer", "ForkingTCPServer", "ThreadPoolTCPServer", "AsyncTCPServer"]
)
def test_s_client_refuses_an_expired_certificate(pki: PKI, kind: str) -> None:
    expired = pki.issue(HOST, "127.0.0.1", expired=True)
    server = make_server(kind, LOCAL, ssl_context=pki.context(expired))
    with serving(server):
        done = s_client(server.server_address, pki, lines="hello\n")
        assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, TIMEOUT)
        stats = server.stats()
    assert done.returncode == 1
    assert "certificate has expired" in done.stderr
    assert done.stdout == ""
    assert stats.step_failures == {"tls:certificate": 1}


@pytest.mark.parametrize(
    "kind", ["TCPServer", "ForkingTCPServer", "ThreadPoolTCPServer", "AsyncTCPServer"]
)
def test_s_client_with_a_client_certificate_under_mutual_tls(
    pki: PKI, tmp_path: Path, kind: str
) -> None:
    context = pki.context(cert_reqs="required", ca_certs=str(pki.ca_file))
    good = _client_files(
        pki, pki.ca.issue_cert("c.example.org", common_name="s-client"), tmp_path, "good"
    )
    stranger = pki.issue("c.example.org", ca=type(pki.ca)())
    bad = _client_files(pki, stranger, tmp_path, "bad")
    server = make_server(kind, LOCAL, ssl_context=context)
    with serving(server):
        served = s_client(server.server_address, pki, *good, lines="info\nquit\n")
        refused = s_client(server.server_address, pki, *bad, lines="info\nquit\n")
        without = s_client(server.server_address, pki, lines="info\nquit\n")
        assert server.wait_for(lambda st: st.completed == 3 and st.active == 0, TIMEOUT)
        stats = server.stats()
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["peer_subject"]["commonName"] == "s-client"
    for done in (refused, without):
        assert done.returncode != 0 and done.stdout == ""
    if kind.startswith("Async"):
        # The event loop's TLS drops a failed handshake without sending its alert:
        # the client sees the connection end (an EOF, or a reset if it had sent more).
        assert UNEXPECTED_EOF in refused.stderr or "errno=104" in refused.stderr
    else:
        assert "alert unknown ca" in refused.stderr, refused.stderr
    assert stats.step_failures == {"tls:certificate": 2}
