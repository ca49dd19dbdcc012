"""Slowloris cannot starve a default pool server: dribblers are cut while a fresh client waits.

The attacks are the hostile-client harness's own (``benchmarks.hostile``),
run in threads of the test against a server in this process, bounded in time.
Each test asserts counts (served, cut), not durations, except the one promise
the defence makes: a fresh client is served during the attack, promptly (see SERVED_WITHIN).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from benchmarks.hostile.attacks import slowloris
from benchmarks.hostile.connections import probe

import sockserve
from helpers.clients import Background, recv_line
from sockserve.testing import serving

pytestmark = pytest.mark.slow

#: The promise is 2 s (the hostile harness measures it: docs/security.md, a max of 0.6 s
#: for the pool and 1.1 s through the runner with 200 dribblers). Here the attack shares
#: the test's process and a loaded CI machine, so the bound keeps a margin; it still
#: fails without the defence, where no fresh client is served during the attack at all.
SERVED_WITHIN = 4.0


class LineEcho(sockserve.StreamRequestHandler):
    """What the issue's attacker targets: ``for line in self.rfile``."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


@pytest.mark.parametrize("clients", [40, 200])
@pytest.mark.parametrize("line_first", [False, True], ids=["bytes", "line-then-bytes"])
def test_a_fresh_client_is_served_while_dribblers_hold_on(clients: int, line_first: bool) -> None:
    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), LineEcho, idle_timeout=2)
    with serving(server):
        ready = threading.Event()
        stop = threading.Event()
        attack = Background(
            lambda: slowloris(
                server.server_address,
                clients=clients,
                duration=8.0,
                line_first=line_first,
                ready=ready,
                stop=stop,
            ),
            name="slowloris",
        )
        assert ready.wait(10)
        # Let the dribblers take every worker first.
        assert server.wait_for(lambda st: st.busy_workers == server.max_workers, 10)
        results = [probe(server.server_address, timeout=5.0) for _ in range(3)]
        # The dribblers that make room are cut, and counted, while the attack lasts.
        cut = server.wait_for(lambda st: st.slow_cuts >= 3, 10)
        stop.set()
        attack.join(20)
    assert all(r.ok for r in results), results
    assert max(r.took_s for r in results) < SERVED_WITHIN, [r.took_s for r in results]
    assert cut, server.stats()


def test_without_pressure_slow_clients_keep_their_worker() -> None:
    """A legitimate slow client is not cut while the server has free workers."""
    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), LineEcho, min_rate_grace=0.2)
    with serving(server), socket.create_connection(server.server_address, timeout=10) as typist:
        for line in (b"one\n", b"two\n", b"three\n"):
            for byte in line:
                typist.sendall(bytes([byte]))
                time.sleep(0.1)  # the client's own pace (a person typing): the point of the test
            assert recv_line(typist) == line
        assert server.stats().slow_cuts == 0


def test_a_cut_read_raises_instead_of_returning_a_partial_line() -> None:
    seen: list[object] = []
    done = threading.Event()

    class Records(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            try:
                seen.append(self.rfile.readline())
            except Exception as exc:
                seen.append(exc)
            finally:
                done.set()

    server = sockserve.ThreadPoolTCPServer(
        ("127.0.0.1", 0), Records, max_workers=1, max_pending=4, min_rate_grace=0.2
    )
    with serving(server):
        with socket.create_connection(server.server_address, timeout=10) as slow:
            slow.sendall(b"partial")  # no newline: it holds the only worker
            assert server.wait_for(lambda st: st.busy_workers == 1, 10)
            with socket.create_connection(server.server_address, timeout=10) as fresh:
                fresh.sendall(b"a whole line\n")  # waits: pressure
                assert done.wait(10)
        assert server.wait_for(lambda st: st.slow_cuts == 1, 10)
    assert len(seen) >= 1 and isinstance(seen[0], sockserve.PeerError), seen


def test_servers_that_speak_first_are_not_held_back() -> None:
    class Banner(sockserve.StreamRequestHandler):
        speaks_first = True

        def handle(self) -> None:
            self.wfile.write(b"220 hello\n")

    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Banner)
    with serving(server), socket.create_connection(server.server_address, timeout=10) as client:
        assert recv_line(client) == b"220 hello\n"  # sent without waiting for our bytes


def test_without_pressure_a_slow_reader_keeps_its_worker() -> None:
    """A client reading a long response at about 1 KiB/s is not cut while workers are free."""
    size = 12 * 1024

    class Long(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            # Small kernel buffers, so the write waits on the client's reading.
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            self.wfile.write(b"y" * size)

    server = sockserve.ThreadPoolTCPServer(("127.0.0.1", 0), Long, min_rate_grace=0.2)
    with serving(server), socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        reader.settimeout(10)
        reader.connect(server.server_address)
        reader.sendall(b"long\n")
        got = 0
        blocked_seen = False
        while got < size:
            chunk = reader.recv(256)
            assert chunk, "cut"
            got += len(chunk)
            blocked_seen = blocked_seen or server.stats().busy_workers == 1
            time.sleep(0.2)  # the client's own pace: about 1.3 KiB/s
        assert blocked_seen  # the worker did wait on this client
        assert server.stats().slow_cuts == 0
