"""A server's life: manual bind and activate, serving, shutdown, serving again, closing."""

from __future__ import annotations

import os
import time

import pytest
from conformance_table import INET, TIMEOUT, UNIX, Harness

from helpers.net import SelectWatch


def test_server_close_closes_the_socket_and_reaps_children(harness: Harness) -> None:
    server = harness.server()
    client = harness.client(server)
    client.send(b"close me\n")
    server.handle_request()
    assert client.recv_line() == b"close me\n"
    children = set(server.active_children or ()) if harness.kind.forking else set()

    server.server_close()

    assert server.socket.fileno() == -1
    if harness.kind.family == UNIX:
        assert not os.path.exists(server.server_address)
    if harness.kind.forking:
        assert len(children) == 1
        assert not server.active_children
        for pid in children:  # reaped: no zombie is left for anyone to wait for
            with pytest.raises(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def test_context_manager_returns_the_server_and_closes_it(harness: Harness) -> None:
    server = harness.server()
    with server as entered:
        assert entered is server
        client = harness.client(server)
        client.send(b"inside\n")
        server.handle_request()
        assert client.recv_line() == b"inside\n"
        assert server.socket.fileno() != -1
    assert server.socket.fileno() == -1


def test_bind_and_activate_false_then_manual_bind_and_activate(harness: Harness) -> None:
    server = harness.server(bind_and_activate=False)
    requested = server.server_address
    if harness.kind.family == INET:
        assert server.socket.getsockname() == ("0.0.0.0", 0)
    else:
        assert not os.path.exists(requested)

    server.server_bind()
    assert server.server_address == server.socket.getsockname()
    if harness.kind.family == INET:
        assert server.server_address[1] != 0
    else:
        assert server.server_address == requested
    server.server_activate()

    client = harness.client(server)
    client.send(b"bound by hand\n")
    server.handle_request()
    assert client.recv_line() == b"bound by hand\n"


def test_shutdown_from_another_thread_stops_serve_forever_promptly(
    harness: Harness, select_watch: SelectWatch
) -> None:
    server = harness.server()
    thread = harness.net.serve(server, poll_interval=60)
    assert harness.round_trip(server) == b"hello\n"
    if harness.kind.asynchronous:
        # The event loop watches the listener again: it is waiting in its poll.
        assert server.wait_for(lambda st: st.accepting and st.active == 0, TIMEOUT)
    else:
        assert select_watch.wait_until_blocked()  # the loop waits for its next request

    started = time.monotonic()
    server.shutdown()
    elapsed = time.monotonic() - started
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert elapsed < 2.0, f"shutdown took {elapsed:.2f} s with poll_interval=60"


def test_serve_forever_runs_again_after_shutdown(harness: Harness) -> None:
    server = harness.server()
    for round_ in range(3):
        thread = harness.net.serve(server, poll_interval=60)
        line = f"round {round_}\n".encode()
        assert harness.round_trip(server, line) == line
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
