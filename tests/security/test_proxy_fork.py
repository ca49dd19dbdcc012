"""Fork: a header that arrives after the accept is read in the child, and the parent still counts.

The parent tries the PROXY step when it accepts; when the header is not there
yet, the forked child reads it. A refusal or a failure there must reach the
parent's ``stats()`` as if the parent had seen it: the child says how its
connection ended through its exit status.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

from helpers.clients import closed_by_peer, connect
from helpers.net import wait_until
from sockserve.protocols.proxy import encode_v1
from sockserve.testing import serving

from ._proxy_support import WAIT, make_server, read_report, waits_for

SERVICE = ("198.51.100.1", 7000)


def forked(server: Any) -> socket.socket:
    """A connection whose child is running: it sent nothing before the fork."""
    sock = connect(server.server_address)
    assert wait_until(lambda: bool(server.active_children)), server.stats()
    return sock


def test_the_child_reads_the_header() -> None:
    server = make_server("fork", proxy_protocol="v1")
    with serving(server), forked(server) as sock:
        sock.sendall(encode_v1(("192.0.2.5", 5), SERVICE) + b"hi\n")
        assert read_report(sock)["client"] == ["192.0.2.5", 5]
        waits_for(server, lambda st: st.completed == 1)
        assert server.stats().step_failures == {}


def test_a_refusal_in_the_child_is_counted_by_the_parent() -> None:
    server = make_server("fork", proxy_protocol="v1", deny=["192.0.2.0/24"])
    with serving(server), forked(server) as sock:
        sock.sendall(encode_v1(("192.0.2.5", 5), SERVICE) + b"hi\n")
        assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(server, lambda st: st.rejected == {"deny": 1} and st.active == 0)
        stats = server.stats()
        assert stats.accepted == 0 and stats.handler_errors == 0


def test_a_failure_in_the_child_is_counted_by_kind() -> None:
    server = make_server("fork", proxy_protocol="v1")
    with serving(server), forked(server) as sock:
        sock.sendall(b"no header\n")
        assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(
            server, lambda st: st.step_failures == {"proxy:missing": 1} and st.peer_errors == 1
        )


def test_a_timeout_in_the_child_is_counted_by_kind() -> None:
    server = make_server("fork", proxy_protocol="v1", proxy_header_timeout=0.3)
    with serving(server), forked(server) as sock:
        assert closed_by_peer(sock) in ("eof", "reset")
        waits_for(server, lambda st: st.step_failures == {"proxy:timeout": 1} and st.timed_out == 1)


def test_an_empty_connection_in_the_child_is_no_error() -> None:
    """The client is another process: a child forked from this one would hold its socket.

    (And no pipe to it either: the child would hold that too. It is killed, and
    the kernel closes its socket.)
    """
    server = make_server("fork", proxy_protocol="v1")
    port = server.server_address[1]
    client_code = (
        "import socket, time\n"
        f"s = socket.create_connection(('127.0.0.1', {port}))\n"
        f"time.sleep({WAIT})\n"
    )
    with serving(server):
        with subprocess.Popen([sys.executable, "-c", client_code]) as client:
            assert wait_until(lambda: bool(server.active_children)), server.stats()
            client.kill()  # its socket closes: the child sees the end, and no header
            client.wait(WAIT)
        waits_for(server, lambda st: st.completed == 1)
        stats = server.stats()
    assert stats.step_failures == {}
    assert (stats.handler_errors, stats.peer_errors, stats.disconnects, stats.timed_out) == (
        0,
        0,
        0,
        0,
    )
