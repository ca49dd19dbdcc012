"""A drain's abort on a TLS connection: the connection ends, its TLS layer stays.

At the deadline a drain shuts the descriptors of the connections still in
flight, from the draining thread, so blocked reads return. Through
``SSLSocket.shutdown`` that would also drop the TLS layer under the
handler's feet, and whatever it wrote next would be handed to the plain
socket; sockserve shuts the descriptor itself. The client here reads the
raw bytes off the wire after the abort: nothing the handler wrote then may
appear in the clear, and the handler's writes fail in the TLS layer
(``SSLEOFError``), not in a plain socket (``BrokenPipeError``, what they
raise once ``SSLSocket.shutdown`` has dropped that layer).

(Inline servers are left out: their drain waits for the serving thread, which
is the one running the handler.)
"""

from __future__ import annotations

import queue
import socket
from typing import Any

import pytest

import sockserve
from helpers.net import TIMEOUT
from sockserve.testing import serving

from .tls_kit import PKI, tls_client

SECRET = b"this must never cross the wire in the clear\n"
LOCAL = ("127.0.0.1", 0)


def _handler(reports: queue.Queue[dict[str, Any]]) -> type[sockserve.StreamRequestHandler]:
    class WritesAfterTheAbort(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"ready\n")
            report: dict[str, Any] = {}
            try:
                report["read"] = self.rfile.readline()  # until the drain's abort
            except OSError as exc:
                report["read"] = type(exc).__name__
            for name, write in (("wfile", self.wfile.write), ("sendall", self.request.sendall)):
                try:
                    write(SECRET)
                    report[name] = "sent"
                except (OSError, ValueError) as exc:
                    report[name] = type(exc).__name__
            reports.put(report)

    return WritesAfterTheAbort


def _raw_bytes_until_the_end(sock: socket.socket) -> bytes:
    """What arrives on the descriptor itself, below the client's TLS layer."""
    data = b""
    while True:
        try:
            chunk = socket.socket.recv(sock, 65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("kind", ["ThreadingTCPServer", "ThreadPoolTCPServer"])
def test_writes_after_a_drains_abort_never_go_out_in_the_clear(pki: PKI, kind: str) -> None:
    reports: queue.Queue[dict[str, Any]] = queue.Queue()
    server = getattr(sockserve, kind)(LOCAL, _handler(reports), ssl_context=pki.context())
    with serving(server), tls_client(server.server_address, pki.client()) as client:
        assert client.recv(100) == b"ready\n"
        report = server.drain(timeout=0.4)
        assert report.forced == 1
        wire = _raw_bytes_until_the_end(client)
        handler_saw = reports.get(timeout=TIMEOUT)
    assert SECRET not in wire
    # The writes failed in the TLS layer (it is still there: an SSLError, not the
    # plain socket's BrokenPipeError), and nothing was sent.
    assert handler_saw["wfile"] == handler_saw["sendall"] == "SSLEOFError", handler_saw
    assert handler_saw["read"] == b""
