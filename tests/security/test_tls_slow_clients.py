"""The slow-client guard over TLS: a dribbling TLS client gives its worker back like a plain one.

A TLS connection's socket is replaced by the handshake step (an ``SSLSocket``
around the accepted one); the pipeline makes it a ``GuardedSSLSocket``, whose
reads and writes the guard counts. Without that, a TLS slowloris held its
worker for as long as it kept dribbling.
"""

from __future__ import annotations

import socket
import threading

import sockserve
from helpers.clients import recv_line
from sockserve.security import slowclients
from sockserve.security.slowclients import GuardedSocket, GuardedSSLSocket, SlowClientCut
from sockserve.testing import serving

from .tls_kit import HOST, PKI, tls_client

WAIT = 10.0


def test_a_dribbling_tls_client_is_taken_back_while_another_waits(pki: PKI) -> None:
    seen: list[object] = []
    sockets: list[type] = []
    ended = threading.Semaphore(0)

    class Echo(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            sockets.append(type(self.request))
            try:
                line = self.rfile.readline()
                seen.append(line)
                self.wfile.write(line)
            except Exception as exc:
                seen.append(exc)
                raise
            finally:
                ended.release()

    server = sockserve.ThreadPoolTCPServer(
        ("127.0.0.1", 0),
        Echo,
        max_workers=1,
        max_pending=4,
        min_rate_grace=0.2,
        ssl_context=pki.context(),
    )
    client_context = pki.client()
    with serving(server):
        with tls_client(server.server_address, client_context) as slow:
            slow.sendall(b"partial")  # no newline: it holds the only worker
            assert server.wait_for(lambda st: st.busy_workers == 1, WAIT)
            with tls_client(server.server_address, client_context) as fresh:
                fresh.sendall(b"a whole line\n")  # waits for the worker: pressure
                # The worker is taken back from the dribbler and serves the fresh client.
                assert recv_line(fresh) == b"a whole line\n"
        assert ended.acquire(timeout=WAIT) and ended.acquire(timeout=WAIT)
        assert server.wait_for(lambda st: st.slow_cuts == 1 and st.active == 0, WAIT)
    assert sockets == [GuardedSSLSocket, GuardedSSLSocket]
    # The cut read raised, instead of returning "partial" as if it were a line.
    assert isinstance(seen[0], SlowClientCut), seen
    assert isinstance(seen[0], sockserve.PeerError)
    assert seen[1] == b"a whole line\n"


def test_a_connection_upgraded_by_start_tls_stays_guarded(pki: PKI) -> None:
    seen: list[type] = []
    plain: list[int] = []
    forgotten: list[bool] = []
    done = threading.Event()

    class Upgrades(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            seen.append(type(self.request))
            if self.rfile.readline() == b"STARTTLS\n":
                self.wfile.write(b"go ahead\n")
                plain.append(id(self.request))
                self.start_tls(pki.context())
                # The detached plain socket's counts are gone with it.
                forgotten.append(plain[0] not in slowclients._moved)
                seen.append(type(self.request))
                self.wfile.write(self.rfile.readline())
            done.set()

    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Upgrades)
    with serving(server), socket.create_connection(server.server_address, timeout=WAIT) as raw:
        raw.sendall(b"STARTTLS\n")
        assert recv_line(raw) == b"go ahead\n"
        with pki.client().wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(b"over tls\n")
            assert recv_line(tls) == b"over tls\n"
        assert done.wait(WAIT)
    assert seen == [GuardedSocket, GuardedSSLSocket]
    assert forgotten == [True]
