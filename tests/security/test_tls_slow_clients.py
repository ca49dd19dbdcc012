"""The slow-client guard over TLS: a dribbling TLS client gives its worker back like a plain one.

A TLS connection's socket is replaced by the handshake step (an ``SSLSocket``
around the accepted one); the pipeline makes it a ``GuardedSSLSocket``, whose
reads and writes the guard counts. Without that, a TLS slowloris held its
worker for as long as it kept dribbling.
"""

from __future__ import annotations

import threading

import sockserve
from helpers.clients import recv_line
from sockserve.security.slowclients import GuardedSSLSocket, SlowClientCut
from sockserve.testing import serving

from .tls_kit import PKI, tls_client

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
