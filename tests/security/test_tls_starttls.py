"""STARTTLS: a handler upgrades a plain connection to TLS mid-protocol, sync and async.

SMTP's shape (RFC 3207): a banner, the client's ``STARTTLS``, the server's
``220`` go-ahead, the handshake, then the same protocol over TLS. The sync
handler calls ``self.start_tls(context)``; the async one ``await
self.writer.start_tls(context)`` (or ``await self.start_tls(context)``, the
same with the server's handshake timeout). Bytes the client pipelined after
its command are discarded, never read as if they had come encrypted.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from typing import Any

import pytest

import sockserve
from helpers.clients import closed_by_peer, recv_line
from helpers.net import TIMEOUT
from helpers.programs import require_program
from sockserve.security.tls import TLSHandshakeError
from sockserve.testing import serving

from .tls_kit import HOST, PKI, info_of, raw_connect, run_with_input

LOCAL = ("127.0.0.1", 0)


def _answer(server: Any, request: Any, line: bytes) -> tuple[bytes, bool]:
    """The reply to one line, and whether it was STARTTLS (the upgrade comes next)."""
    command = line.strip().upper()
    if command.startswith(b"EHLO"):
        return b"250-localhost\r\n250 STARTTLS\r\n", False
    if command == b"STARTTLS":
        return b"220 go ahead\r\n", True
    if command == b"INFO":
        info = server.connection_info(request)
        return json.dumps(info_of(info.tls if info else None)).encode() + b"\r\n", False
    return b"250 " + line.rstrip(b"\r\n") + b"\r\n", False


class SyncSMTPish(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"220 localhost ready\r\n")
        while line := self.rfile.readline():
            if line.strip().upper() == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            reply, upgrade = _answer(self.server, self.request, line)
            self.wfile.write(reply)
            if upgrade:
                self.start_tls(self.server.starttls_context)  # type: ignore[attr-defined]


class AsyncSMTPish(sockserve.AsyncStreamRequestHandler):
    async def handle(self) -> None:
        self.writer.write(b"220 localhost ready\r\n")
        while line := await self.reader.readline():
            if line.strip().upper() == b"QUIT":
                self.writer.write(b"221 bye\r\n")
                return
            reply, upgrade = _answer(self.server, self.request, line)
            self.writer.write(reply)
            if upgrade:
                await self.upgrade(self.server.starttls_context)  # type: ignore[attr-defined]

    async def upgrade(self, context: ssl.SSLContext) -> None:
        await self.start_tls(context)


class AsyncWriterSMTPish(AsyncSMTPish):
    """The stream's own ``start_tls``, as an asyncio user would write it."""

    async def upgrade(self, context: ssl.SSLContext) -> None:
        await self.writer.start_tls(context, ssl_handshake_timeout=self.server.handshake_timeout)


#: (server class, handler, options): sync strategies, then async on both event loops.
SERVERS: dict[str, tuple[str, type[Any], dict[str, Any]]] = {
    "TCPServer": ("TCPServer", SyncSMTPish, {}),
    "ThreadingTCPServer": ("ThreadingTCPServer", SyncSMTPish, {}),
    "ForkingTCPServer": ("ForkingTCPServer", SyncSMTPish, {}),
    "ThreadPoolTCPServer": ("ThreadPoolTCPServer", SyncSMTPish, {}),
    "Async-asyncio": ("AsyncTCPServer", AsyncSMTPish, {"event_loop": "asyncio"}),
    "Async-uvloop": ("AsyncTCPServer", AsyncSMTPish, {"event_loop": "uvloop"}),
    "Async-writer": ("AsyncTCPServer", AsyncWriterSMTPish, {"event_loop": "asyncio"}),
}
IN_PROCESS = [name for name in SERVERS if not name.startswith("Forking")]


def _server(name: str, pki: PKI, **options: Any) -> Any:
    cls_name, handler, extra = SERVERS[name]
    server = getattr(sockserve, cls_name)(LOCAL, handler, **extra, **options)
    server.starttls_context = pki.context()
    return server


def _upgrade(sock: socket.socket, pki: PKI, pipelined: bytes = b"") -> ssl.SSLSocket:
    """EHLO, STARTTLS (with ``pipelined`` bytes in the same write), go-ahead, handshake."""
    sock.sendall(b"EHLO client\r\n")
    assert recv_line(sock) == b"250-localhost\r\n"
    assert recv_line(sock) == b"250 STARTTLS\r\n"
    sock.sendall(b"STARTTLS\r\n" + pipelined)
    assert recv_line(sock) == b"220 go ahead\r\n"
    return pki.client().wrap_socket(sock, server_hostname=HOST, suppress_ragged_eofs=False)


@pytest.mark.parametrize("name", list(SERVERS))
def test_starttls_upgrades_the_connection_and_discards_pipelined_plaintext(
    pki: PKI, name: str
) -> None:
    server = _server(name, pki, max_line=1024)
    with serving(server):
        with raw_connect(server.server_address) as raw:
            raw.sendall(b"INFO\r\n")
            assert recv_line(raw).startswith(b"220 ")  # the banner, then the answer
            plain_info = json.loads(recv_line(raw))
            # "INJECTED" comes in the clear right behind STARTTLS: it must not be
            # answered as if the client had sent it over TLS.
            with _upgrade(raw, pki, pipelined=b"INJECTED\r\n") as tls:
                tls.sendall(b"INFO\r\n")
                info = json.loads(recv_line(tls))
                tls.sendall(b"HELLO over tls\r\n")
                assert recv_line(tls) == b"250 HELLO over tls\r\n"
                tls.sendall(b"QUIT\r\n")
                assert recv_line(tls) == b"221 bye\r\n"
                # The end: a close_notify, not a bare EOF (SSLEOFError).
                assert tls.recv(100) == b""
        assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, TIMEOUT)
        stats = server.stats()
    assert plain_info == {"tls": None}
    assert info["version"] == "TLSv1.3" and info["server_name"] == HOST
    assert stats.handler_errors == stats.peer_errors == 0 and stats.step_failures == {}


@pytest.mark.parametrize("name", IN_PROCESS)
def test_a_failed_starttls_handshake_is_the_peers_fault(
    pki: PKI, name: str, server_log: pytest.LogCaptureFixture
) -> None:
    server = _server(name, pki)
    with serving(server):
        with raw_connect(server.server_address) as raw:
            assert recv_line(raw).startswith(b"220 ")
            raw.sendall(b"STARTTLS\r\n")
            assert recv_line(raw) == b"220 go ahead\r\n"
            raw.sendall(b"MAIL FROM:<still plain>\r\n")  # not a ClientHello
            assert closed_by_peer(raw) in ("eof", "reset")
        assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, TIMEOUT)
        stats = server.stats()
    assert stats.step_failures == {"tls:not-tls": 1}
    assert stats.peer_errors == 1 and stats.handler_errors == 0
    lines = [r for r in server_log.records if r.name == "sockserve.server"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, server_log.text
    assert "tls:not-tls" in lines[0].getMessage() and lines[0].exc_info is None


@pytest.mark.parametrize("name", IN_PROCESS)
def test_a_client_silent_after_the_go_ahead_is_cut_at_handshake_timeout(
    pki: PKI, name: str
) -> None:
    server = _server(name, pki, handshake_timeout=0.3)
    with serving(server):
        with raw_connect(server.server_address) as raw:
            assert recv_line(raw).startswith(b"220 ")
            raw.sendall(b"STARTTLS\r\n")
            assert recv_line(raw) == b"220 go ahead\r\n"
            assert closed_by_peer(raw) in ("eof", "reset")
        assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, TIMEOUT)
        stats = server.stats()
    assert stats.step_failures == {"tls:timeout": 1}
    assert stats.timed_out == 1 and stats.handler_errors == 0


def test_start_tls_needs_a_context_and_a_plain_connection(pki: PKI) -> None:
    seen: list[BaseException] = []

    class Twice(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            try:
                self.start_tls()  # the server serves plain: no ssl_context
            except ValueError as exc:
                seen.append(exc)
            self.wfile.write(b"220 go ahead\r\n")
            self.start_tls(pki.context())
            try:
                self.start_tls(pki.context())
            except RuntimeError as exc:
                seen.append(exc)
            self.wfile.write(b"done\n")

    server = sockserve.ThreadPoolTCPServer(LOCAL, Twice)
    with serving(server), raw_connect(server.server_address) as raw:
        assert recv_line(raw) == b"220 go ahead\r\n"
        with pki.client().wrap_socket(raw, server_hostname=HOST) as tls:
            assert recv_line(tls) == b"done\n"
    assert [type(exc) for exc in seen] == [ValueError, RuntimeError]
    assert issubclass(TLSHandshakeError, sockserve.PeerError)


@pytest.mark.parametrize("name", ["ThreadPoolTCPServer", "ForkingTCPServer", "Async-uvloop"])
def test_openssl_s_client_starttls_smtp(pki: PKI, name: str) -> None:
    """OpenSSL's own SMTP STARTTLS dialogue (greeting, EHLO, STARTTLS, 220)."""
    openssl = require_program("openssl", "apt-get install openssl")
    server = _server(name, pki)
    with serving(server):
        host, port = server.server_address
        argv = [openssl, "s_client", "-connect", f"{host}:{port}", "-starttls", "smtp"]
        argv += ["-servername", HOST, "-CAfile", str(pki.ca_file), "-verify_return_error"]
        done = run_with_input([*argv, "-quiet", "-ign_eof"], "INFO\nQUIT\n")
        assert server.wait_for(lambda st: st.completed == 1 and st.active == 0, TIMEOUT)
        stats = server.stats()
    assert done.returncode == 0, done.stderr
    assert "unexpected eof" not in done.stderr
    info, bye = done.stdout.splitlines()
    assert json.loads(info)["version"] == "TLSv1.3"
    assert json.loads(info)["server_name"] == HOST
    assert bye == "221 bye"
    assert stats.step_failures == {} and stats.handler_errors == 0
