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
from helpers.clients import Background, closed_by_peer, recv_line
from helpers.net import TIMEOUT
from sockserve.testing import serving

from .tls_kit import HOST, PKI, raw_connect, tls_client

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


class TLSEcho(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


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


@pytest.mark.parametrize("kind", ["ThreadingTCPServer", "ThreadPoolTCPServer"])
def test_a_client_whose_handshake_a_drain_finds_under_way_is_served(pki: PKI, kind: str) -> None:
    """Connected before the drain, handshaking after it began: not an idle connection to
    close (a client connecting during a reload's drain saw an EOF mid-handshake)."""
    server = getattr(sockserve, kind)(LOCAL, TLSEcho, ssl_context=pki.context())
    with serving(server), raw_connect(server.server_address) as raw:
        assert server.wait_for(lambda st: st.accepted == 1 and st.preparing == 1, TIMEOUT)
        drain = Background(server.drain, 10.0, name="test-drain")
        assert server.draining.wait(TIMEOUT)
        with pki.client().wrap_socket(raw, server_hostname=HOST) as client:
            client.sendall(b"during the drain\n")
            assert recv_line(client) == b"during the drain\n"
        report = drain.join(TIMEOUT)
    assert (report.in_flight, report.finished, report.idle_closed) == (1, 1, 0), report


@pytest.mark.parametrize("kind", ["ThreadingTCPServer", "ThreadPoolTCPServer"])
def test_a_silent_tls_client_at_a_drain_is_cut_by_its_handshake_timeout(
    pki: PKI, kind: str
) -> None:
    server = getattr(sockserve, kind)(
        LOCAL, TLSEcho, ssl_context=pki.context(), handshake_timeout=0.3
    )
    with serving(server), raw_connect(server.server_address) as raw:
        assert server.wait_for(lambda st: st.preparing == 1, TIMEOUT)
        report = server.drain(timeout=10.0)
        assert closed_by_peer(raw) in ("eof", "reset")
        stats = server.stats()
    assert (report.in_flight, report.forced) == (1, 0), report
    assert stats.step_failures == {"tls:timeout": 1}
