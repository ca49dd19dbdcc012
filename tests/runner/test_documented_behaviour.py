"""What docs/cli.md and docs/deploy.md promise about stopping, SIGHUP and Unix socket files.

Each test pins one sentence of the documentation to the behaviour (issue 15
found three of them saying the opposite of the code): a stop waits up to
``--grace`` for connections in flight; SIGHUP without worker processes keeps
serving; a socket file left by a dead server is replaced, a live one or a
regular file is refused and left alone.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

from helpers.clients import Conn, connect, round_trip
from helpers.net import wait_until
from helpers.processes import run, sockserve_argv
from sockserve.exitcodes import ExitCode

DRAINED = r"drained in \S+ s: (\d+) of (\d+) in-flight request\(s\) finished, 0 forced$"


def refused(port: int) -> bool:
    try:
        connect(("127.0.0.1", port)).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_stop_serves_the_connections_in_flight_before_exiting(sockserve: Any) -> None:
    """cli.md: connections in flight get up to --grace seconds to finish."""
    server = sockserve("echo", "--bind", "127.0.0.1:0", "--grace", "60")
    port = server.port()
    with Conn(port) as client:
        assert client.ask("before") == "before"
        mark = server.mark()
        server.signal(signal.SIGTERM)
        server.wait_for(r"^\[\d+\] INFO sockserve\.worker: received SIGTERM: stopping$", start=mark)
        # The drain has begun once the listener is closed: new clients are refused.
        assert wait_until(lambda: refused(port)), server.describe()
        assert client.ask("during the drain") == "during the drain"
        assert server.proc.poll() is None  # still waiting for this client
    assert server.wait_exit() == ExitCode.OK
    # Ours, and perhaps a probe that connected just before the listener closed.
    [report] = server.lines(DRAINED)
    assert report[1] == report[2] != "0", server.output


def test_sighup_without_workers_keeps_serving(sockserve: Any) -> None:
    """cli.md and deploy.md: with --workers 0, SIGHUP is logged and the process serves on."""
    server = sockserve("echo", "--bind", "127.0.0.1:0")
    port = server.port()
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_for(
        r"^\[\d+\] INFO sockserve\.cli: SIGHUP: TLS certificate reloaded on 0 listener\(s\); "
        r"other settings change only with worker processes",
        start=mark,
    )
    assert round_trip(("127.0.0.1", port), b"after SIGHUP\n") == b"after SIGHUP\n"
    assert server.stop() == ExitCode.OK


def test_a_socket_file_left_by_a_dead_server_is_replaced(sockserve: Any, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # closed without unlinking: what a killed server leaves
    assert path.is_socket()
    server = sockserve("echo", "--bind", f"unix:{path}")
    assert server.listening() == [f"unix:{path}"]
    assert round_trip(str(path), b"fresh\n") == b"fresh\n"
    assert server.stop() == ExitCode.OK


def test_a_socket_another_process_listens_on_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        result = run(sockserve_argv("echo", "--bind", f"unix:{path}"))
        assert result.returncode == ExitCode.BIND, result.stderr
        assert "another process is listening" in result.stderr
        assert "Traceback" not in result.stderr
        with connect(str(path)):  # the other process's socket still works
            pass


def test_a_path_that_is_not_a_socket_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a socket")
    result = run(sockserve_argv("echo", "--bind", f"unix:{path}"))
    assert result.returncode == ExitCode.BIND, result.stderr
    assert "is not a socket" in result.stderr
    assert path.read_text() == "not a socket"
