"""ThreadPool*Server basics: every family serves; workers are named, bounded and survive errors."""

from __future__ import annotations

import logging
import os
import socket
import threading

import pytest

import sockserve as socketserver
from helpers.clients import (
    closed_by_peer,
    connect,
    recv_line,
    round_trip,
    run_clients,
    short_tempdir,
)
from helpers.handlers import LineEcho, PacketEcho
from helpers.net import TIMEOUT
from helpers.processes import open_descriptors
from sockserve.testing import serving

WAIT = 10.0


def tcp_echo(server: socketserver.TCPServer, payload: bytes) -> bytes:
    return round_trip(server.server_address, payload)


# -- every family serves ------------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_stream_pool_servers_echo(family: str) -> None:
    with short_tempdir() as tmp:
        if family == "tcp":
            server: socketserver.TCPServer = socketserver.ThreadPoolTCPServer(
                ("127.0.0.1", 0), LineEcho, max_workers=3
            )
        else:
            server = socketserver.ThreadPoolUnixStreamServer(
                os.path.join(tmp, "s"), LineEcho, max_workers=3
            )
        with serving(server):
            with connect(server.server_address) as client:
                for i in range(5):
                    client.sendall(b"line %d\r\n" % i)
                    assert recv_line(client) == b"line %d\r\n" % i
            results = run_clients(6, lambda i: round_trip(server.server_address, b"c%d\n" % i))
            assert results == [b"c%d\n" % i for i in range(6)]
            assert server.wait_for(lambda st: st.completed == 7 and st.active == 0, WAIT)
            stats = server.stats()
            assert stats.accepted == 7
            assert 1 <= stats.workers <= 3
            assert stats.handler_errors == 0


@pytest.mark.parametrize("family", ["udp", "unix"])
def test_datagram_pool_servers_echo(family: str) -> None:
    with short_tempdir() as tmp:
        if family == "udp":
            server: socketserver.UDPServer = socketserver.ThreadPoolUDPServer(
                ("127.0.0.1", 0), PacketEcho, max_workers=2
            )
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            server = socketserver.ThreadPoolUnixDatagramServer(
                os.path.join(tmp, "s"), PacketEcho, max_workers=2
            )
            client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            client.bind(os.path.join(tmp, "c"))
        with serving(server), client:
            client.settimeout(TIMEOUT)
            for i in range(20):
                client.sendto(b"packet %d" % i, server.server_address)
                data, _ = client.recvfrom(100)
                assert data == b"packet %d" % i
            assert server.wait_for(lambda st: st.completed == 20, WAIT)
            stats = server.stats()
            assert stats.accepted == 20
            assert 1 <= stats.workers <= 2


# -- workers: named, bounded ----------------------------------------------------


def test_workers_are_named_and_never_more_than_max_workers() -> None:
    max_workers = 4
    seen: set[threading.Thread] = set()
    lock = threading.Lock()
    hold = threading.Barrier(max_workers, timeout=WAIT)

    class Recording(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            with lock:
                seen.add(threading.current_thread())
            for line in self.rfile:
                if line == b"hold\n":
                    hold.wait()  # every worker busy at once: the pool must have grown to max
                self.wfile.write(line)

    before = set(threading.enumerate())
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0), Recording, max_workers=max_workers, max_pending=4
    )
    with serving(server):
        assert run_clients(max_workers, lambda i: tcp_echo(server, b"hold\n"))

        def client(i: int) -> int:
            for j in range(25):
                line = b"%d.%d\n" % (i, j)
                assert tcp_echo(server, line) == line
            return i

        assert run_clients(10, client) == list(range(10))
        assert server.wait_for(lambda st: st.completed == max_workers + 250, WAIT)
        stats = server.stats()
        assert stats.workers == max_workers
        new_threads = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        workers = [t for t in new_threads if "worker" in t.name]
        assert len(workers) == max_workers
        assert all(t.name.startswith("sockserve-") for t in workers)
        assert len(seen) == max_workers
        assert seen == set(workers)
    # server_close joined the workers: none is left behind.
    assert not any(t.is_alive() for t in seen)


# -- workers survive what handlers throw --------------------------------------


def test_workers_survive_handler_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    max_workers = 2
    both_busy = threading.Barrier(max_workers, timeout=WAIT)
    boom_threads: set[int] = set()

    class Fragile(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            if line == b"both\n":
                both_busy.wait()
            elif line == b"boom\n":
                boom_threads.add(threading.get_ident())
                raise RuntimeError("handler bug")
            self.wfile.write(line)

    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), Fragile, max_workers=max_workers)
    with serving(server):
        run_clients(max_workers, lambda i: tcp_echo(server, b"both\n"))
        assert server.stats().workers == max_workers
        worker_ids = {t.ident for t in threading.enumerate() if "worker" in t.name}
        with caplog.at_level(logging.ERROR, logger="sockserve.server"):
            for _ in range(50):
                with connect(server.server_address) as client:
                    client.sendall(b"boom\n")
                    assert closed_by_peer(client) == "eof"
        assert tcp_echo(server, b"still here\n") == b"still here\n"
        assert server.wait_for(lambda st: st.handler_errors == 50 and st.active == 0, WAIT)
        stats = server.stats()
        assert stats.workers == max_workers
        assert stats.handler_errors == 50
        assert stats.completed == max_workers + 51
        assert boom_threads <= worker_ids
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    # The same bug at the same place 50 times: its first report keeps the
    # traceback, the repeats are counted by the error log's rate limiter.
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_workers_survive_system_exit_in_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    class Exiting(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            if line == b"exit\n":
                raise SystemExit(3)
            self.wfile.write(line)

    server = socketserver.ThreadPoolTCPServer(("127.0.0.1", 0), Exiting, max_workers=1)
    with serving(server):
        assert tcp_echo(server, b"warm\n") == b"warm\n"
        worker = next(t for t in threading.enumerate() if "worker" in t.name and t.is_alive())
        with caplog.at_level(logging.ERROR, logger="sockserve.pool"):
            for _ in range(5):
                with connect(server.server_address) as client:
                    client.sendall(b"exit\n")
                    # The request is still shut down and released.
                    assert closed_by_peer(client) == "eof"
        assert tcp_echo(server, b"after\n") == b"after\n"
        assert server.wait_for(lambda st: st.active == 0 and st.completed == 7, WAIT)
        assert worker.is_alive()
        assert server.stats().workers == 1
    survived = [r for r in caplog.records if r.name == "sockserve.pool"]
    assert len(survived) == 5


# -- nothing grows with connections served --------------------------------------


@pytest.mark.parametrize("dispatch", ["immediate", "readable"])
def test_nothing_grows_with_connections_served(dispatch: str) -> None:
    max_workers = 4
    server = socketserver.ThreadPoolTCPServer(
        ("127.0.0.1", 0),
        LineEcho,
        max_workers=max_workers,
        max_connections_per_ip=64,  # exercises the per-IP table too
        dispatch=dispatch,
    )
    threads_at_start = threading.active_count()
    with serving(server):
        run_clients(8, lambda i: tcp_echo(server, b"warm\n"))
        assert server.wait_for(lambda st: st.active == 0 and st.completed == 8, WAIT)
        fds_before = open_descriptors()

        def client(i: int) -> None:
            for j in range(125):
                assert tcp_echo(server, b"%d\n" % j) == b"%d\n" % j

        run_clients(4, client)
        assert server.wait_for(lambda st: st.active == 0 and st.completed == 508, WAIT)
        stats = server.stats()
        assert stats.workers <= max_workers
        assert stats.pending == 0
        # The serving thread, the workers, (readable) the first-byte thread and
        # (once the pool was under pressure) the slow-client watcher; nothing else.
        assert threading.active_count() <= threads_at_start + 1 + max_workers + 1 + 1
        assert open_descriptors() == fds_before
        assert server._pipeline.tracker.in_flight == 0
        assert not server._pipeline.tracker._per_ip
        assert not server._workers.pool._queue
        assert len(server._workers.pool._threads) <= max_workers
