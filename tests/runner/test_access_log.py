"""The access log: one line per connection, with peer, outcome, duration and byte counts."""

from __future__ import annotations

import signal
import socket
import struct
from typing import Any

from helpers.clients import Conn
from sockserve.exitcodes import ExitCode

from .support import HANDLER

BIND = ("--bind", "127.0.0.1:0")


def access_line(port: int) -> str:
    """The access-log line of the client connection whose local port is ``port``."""
    return (
        rf"^\[(\d+)\] INFO sockserve\.access: 127\.0\.0\.1:{port} "
        r"(\S+) (\d+\.\d{3})s rx=(\d+) tx=(\d+)$"
    )


def test_one_line_per_connection_with_the_bytes_really_moved(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1")
    port = server.port()
    [(_index, worker)] = server.started()
    with Conn(port) as conn:
        peer = conn.sock.getsockname()[1]
        request = "echo " + "x" * 1000
        assert conn.ask(request) == "x" * 1000
        assert conn.ask("pid") == str(worker)
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.at_eof()  # the line is written before the server closes
    [line] = server.wait_for(access_line(peer))
    pid, outcome, duration, rx, tx = line.groups()
    assert (int(pid), outcome) == (worker, "ok")
    assert int(rx) == len(request) + 1 + len("pid\n")
    assert int(tx) == 1000 + 1 + len(f"{worker}\n")
    assert 0 <= float(duration) < 10

    # One line per connection, each with its own peer.
    peers = []
    for _ in range(5):
        with Conn(port) as conn:
            peers.append(conn.sock.getsockname()[1])
            assert conn.ask("echo hi") == "hi"
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.at_eof()
    for peer in peers:
        [line] = server.wait_for(access_line(peer))
        assert line.group(2, 4, 5) == ("ok", "8", "3")
    assert len(server.lines(r"INFO sockserve\.access: ")) == 6


def test_a_silent_client_is_logged_as_a_timeout(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--idle-timeout", "0.2")
    with Conn(server.port()) as conn:
        peer = conn.sock.getsockname()[1]
        assert conn.at_eof()  # sent nothing; the server gave up after 0.2 s
    [line] = server.wait_for(access_line(peer))
    assert line.group(2, 4, 5) == ("timeout", "0", "0")
    assert float(line[3]) >= 0.2


def test_no_access_log_turns_it_off(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--no-access-log")
    port = server.port()
    for _ in range(3):
        with Conn(port) as conn:
            assert conn.ask("echo hi") == "hi"
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.at_eof()
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == ExitCode.OK  # all it will ever write has been read
    assert "sockserve.access" not in server.output


def _reset(conn: Conn) -> None:
    """Close with a reset (SO_LINGER 0), not a FIN."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()


def test_rx_after_a_reset_counts_the_bytes_sent_no_fin_taken_off(sockserve: Any) -> None:
    """A reset is no FIN: nothing is taken off the count for one (it said rx=3 here)."""
    server = sockserve("echo", *BIND, "--workers", "0")
    with Conn(server.port()) as conn:
        peer = conn.sock.getsockname()[1]
        conn.sock.sendall(b"abcd")
        assert conn.sock.recv(4) == b"abcd"  # the server has read all four
        _reset(conn)
    [line] = server.wait_for(
        rf"^\[\d+\] INFO sockserve\.access: 127\.0\.0\.1:{peer} (\S+) \S+ (.*)$"
    )
    assert line.groups() == ("reset", "rx=4 tx=4")


def test_rx_of_a_client_that_closed_with_unread_data_is_0(sockserve: Any) -> None:
    """Closing with unread data sends a reset, no FIN (it said rx=-1 here)."""
    server = sockserve("chargen", *BIND, "--workers", "0")
    with Conn(server.port()) as conn:
        peer = conn.sock.getsockname()[1]
        assert conn.sock.recv(100)
        conn.sock.close()  # chargen's stream still in our buffer: a reset
    [line] = server.wait_for(
        rf"^\[\d+\] INFO sockserve\.access: 127\.0\.0\.1:{peer} (\S+) \S+ rx=(\S+)"
    )
    assert line[2] == "0"
