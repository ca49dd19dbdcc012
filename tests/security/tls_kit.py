"""What the TLS tests share: certificates made at test time, servers of every strategy, clients.

Certificates come from ``trustme`` (a throw-away CA per test session, no
files in the repository to expire); :class:`PKI` writes them where
``openssl``, ``curl`` and the runner can read them. The servers answer a
small line protocol that works across a fork (a forked child cannot report
through memory): a line comes back as it is, ``info`` returns what
``server.connection_info(self.request).tls`` says as one JSON line, and
``quit`` ends the connection from the server's side (so the server, not the
client, says goodbye: the test then sees whether a ``close_notify`` came).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

import sockserve
from helpers.clients import recv_line
from helpers.net import TIMEOUT
from sockserve.security.tls import server_context

#: The stream server classes, one per strategy, TCP and Unix.
TCP_KINDS = [
    "TCPServer",
    "ThreadingTCPServer",
    "ForkingTCPServer",
    "ThreadPoolTCPServer",
    "AsyncTCPServer",
]
UNIX_KINDS = [
    "UnixStreamServer",
    "ThreadingUnixStreamServer",
    "ForkingUnixStreamServer",
    "ThreadPoolUnixStreamServer",
    "AsyncUnixStreamServer",
]

#: The name the server certificate is issued for (and clients ask for).
HOST = "localhost"


def info_of(tls: Any) -> dict[str, Any]:
    """``TLSInfo`` as JSON-able fields (None for a plain connection)."""
    if tls is None:
        return {"tls": None}
    subject = None
    if tls.peer_certificate is not None:
        subject = dict(pair for rdn in tls.peer_certificate["subject"] for pair in rdn)
    return {
        "tls": True,
        "version": tls.version,
        "cipher": tls.cipher[0] if tls.cipher else None,
        "alpn": tls.alpn,
        "server_name": tls.server_name,
        "peer_subject": subject,
        "peer_der": len(tls.peer_certificate_der or b""),
    }


class Echo(sockserve.StreamRequestHandler):
    """Lines back; ``info``: the connection's TLS session as JSON; ``quit``: the end."""

    def handle(self) -> None:
        while line := self.rfile.readline():
            if line == b"quit\n":
                return
            if line == b"info\n":
                info = self.server.connection_info(self.request)
                line = json.dumps(info_of(info.tls if info else None)).encode() + b"\n"
            self.wfile.write(line)


class AsyncEcho(sockserve.AsyncStreamRequestHandler):
    """The same protocol, with coroutines."""

    async def handle(self) -> None:
        while line := await self.reader.readline():
            if line == b"quit\n":
                return
            if line == b"info\n":
                info = self.server.connection_info(self.request)
                line = json.dumps(info_of(info.tls if info else None)).encode() + b"\n"
            self.writer.write(line)
            await self.writer.drain()


def make_server(
    kind: str, address: Any, handler: type[Any] | None = None, **options: Any
) -> sockserve.BaseServer:
    """A server of class ``sockserve.KIND`` on ``address`` (Echo or AsyncEcho by default)."""
    cls = getattr(sockserve, kind)
    if handler is None:
        handler = AsyncEcho if kind.startswith("Async") else Echo
    server: sockserve.BaseServer = cls(address, handler, **options)
    return server


@dataclass
class PKI:
    """A CA, a server certificate for ``localhost``/127.0.0.1/::1, and their files."""

    ca: trustme.CA
    server: trustme.LeafCert
    directory: Path

    @classmethod
    def create(cls, directory: Path) -> PKI:
        ca = trustme.CA()
        pki = cls(ca, ca.issue_cert(HOST, "127.0.0.1", "::1"), directory)
        ca.cert_pem.write_to_path(str(pki.ca_file))
        pki.write_server(pki.server, pki.cert_file, pki.key_file)
        return pki

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "server.key"

    @staticmethod
    def write_server(leaf: trustme.LeafCert, cert_file: Path, key_file: Path) -> None:
        """The certificate chain and the key, each in its PEM file (as servers take them)."""
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key_file.write_bytes(leaf.private_key_pem.bytes())

    def issue(self, *names: str, expired: bool = False, ca: trustme.CA | None = None) -> Any:
        """Another leaf certificate (an expired one, or one from another CA)."""
        issuer = ca if ca is not None else self.ca
        if not expired:
            return issuer.issue_cert(*names)
        now = datetime.datetime.now(datetime.UTC)
        return issuer.issue_cert(
            *names,
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )

    def context(self, leaf: trustme.LeafCert | None = None, **options: Any) -> ssl.SSLContext:
        """A server context (sockserve's defaults) for the server certificate or ``leaf``."""
        if leaf is None:
            return server_context(str(self.cert_file), str(self.key_file), **options)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        return context

    def client(
        self, cert: trustme.LeafCert | None = None, alpn: list[str] | None = None
    ) -> ssl.SSLContext:
        """A verifying client context trusting the CA (with a client certificate, ALPN)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if cert is not None:
            cert.configure_cert(context)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def raw_connect(address: Any, timeout: float = TIMEOUT) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def tls_client(
    address: Any,
    context: ssl.SSLContext,
    server_hostname: str | None = HOST,
    timeout: float = TIMEOUT,
) -> Iterator[ssl.SSLSocket]:
    """A TLS connection, handshake done; an EOF without ``close_notify`` raises ``SSLEOFError``."""
    raw = raw_connect(address, timeout)
    try:
        sock = context.wrap_socket(raw, server_hostname=server_hostname, suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise
    with sock:
        yield sock


def ask(sock: socket.socket, line: bytes) -> bytes:
    """One line out, one line back."""
    sock.sendall(line)
    return recv_line(sock)


def ask_info(sock: socket.socket) -> dict[str, Any]:
    """What the server's handler saw of this connection's TLS session."""
    info: dict[str, Any] = json.loads(ask(sock, b"info\n"))
    return info


def server_says_goodbye(sock: ssl.SSLSocket) -> str:
    """Send ``quit`` and read to the end: "close_notify" or "eof" (the peer just closed)."""
    sock.sendall(b"quit\n")
    try:
        rest = sock.recv(1024)
    except ssl.SSLEOFError:
        return "eof"
    assert rest == b"", f"unexpected bytes after quit: {rest!r}"
    return "close_notify"


def run_with_input(argv: list[str], lines: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with ``lines`` as its standard input, from a file, not a pipe.

    With a forking server in this process, a pipe would deadlock now and
    then: the server may fork a handler for the client while ``Popen`` still
    holds its exec-status pipe open, so the handler inherits it and ``Popen``
    waits for the handler to exit, which waits for the client's input, which
    ``subprocess.run`` only writes once ``Popen`` returns. A file is there
    from the start.
    """
    with tempfile.TemporaryFile("w+") as stdin:
        stdin.write(lines)
        stdin.seek(0)
        return subprocess.run(
            argv, stdin=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
