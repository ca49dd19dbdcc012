"""Stopping and reloading: SIGTERM drains, a second SIGTERM aborts, SIGHUP swaps the code."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import Conn, connect
from helpers.net import TIMEOUT, wait_until
from helpers.processes import (
    STARTED,
    child_env,
    listening_inodes,
    socket_inodes,
    wait_pid_gone,
)
from sockserve.exitcodes import ExitCode

from .support import HANDLER, Load, ask, connections

BIND = ("--bind", "127.0.0.1:0")
RECEIVED_TERM = r"^(?:\[(\d+)\] )?INFO sockserve\.worker: received SIGTERM: stopping$"
DRAINED = r"drained in [\d.]+ s: (\d+) of (\d+) in-flight request\(s\) finished, (\d+) forced$"


def worker_pid(server: Any) -> int:
    """The pid that serves (the worker with --workers 1, the process itself with 0)."""
    started = server.started()
    return started[-1][1] if started else server.pid


def quiet_for(conn: Conn, seconds: float) -> bool:
    """Whether ``conn`` stays without news (no data, no EOF) for ``seconds``.

    Only for what must NOT happen and announces nothing when it does not.
    """
    with selectors.DefaultSelector() as selector:
        selector.register(conn.sock, selectors.EVENT_READ)
        return not selector.select(seconds)


# -- SIGTERM ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "1"])
def test_sigterm_lets_requests_in_flight_finish(sockserve: Any, workers: str) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", workers, "--grace", "20")
    port = server.port()
    [listener] = listening_inodes(port)
    serving = worker_pid(server)
    with connections(port, 3) as conns:
        for conn in conns:  # each handler is now running, waiting for our next line
            assert conn.ask("echo first") == "first"
        began = time.monotonic()
        server.signal(signal.SIGTERM)
        server.wait_for(RECEIVED_TERM)
        # The drain has begun once the serving process closed its listener.
        assert wait_until(lambda: listener not in socket_inodes(serving))
        assert server.proc.poll() is None  # still draining: it waits for us
        for conn in conns:
            assert conn.ask("echo second") == "second"  # finished, not cut short
            conn.sock.shutdown(socket.SHUT_WR)  # and ended by the client
            assert conn.at_eof()
        assert server.wait_exit() == ExitCode.OK
    assert time.monotonic() - began < 10  # it did not wait out the grace period
    [drained] = server.lines(DRAINED)
    assert drained.groups() == ("3", "3", "0")
    assert "Traceback" not in server.output
    assert "Warning" not in server.output


@pytest.mark.parametrize("workers", ["0", "1"])
def test_new_connections_are_refused_while_draining(sockserve: Any, workers: str) -> None:
    """A drain refuses new clients at once (a proxy retries them elsewhere), rather than
    queueing them in a backlog nobody will accept from, and resetting them at exit."""
    server = sockserve("run", HANDLER, *BIND, "--workers", workers, "--grace", "20")
    port = server.port()
    [listener] = listening_inodes(port)
    serving = worker_pid(server)
    with Conn(port) as in_flight:
        assert in_flight.ask("echo hold") == "hold"
        server.signal(signal.SIGTERM)
        server.wait_for(RECEIVED_TERM)
        # The draining process closes its listener (no log line says when).
        assert wait_until(lambda: listener not in socket_inodes(serving))
        with pytest.raises(ConnectionRefusedError):
            connect(("127.0.0.1", port)).close()
        assert in_flight.ask("echo still served") == "still served"


@pytest.mark.parametrize("workers", ["0", "1"])
def test_connections_waiting_in_the_backlog_are_served_by_the_drain(
    sockserve: Any, workers: str
) -> None:
    """A client whose connect() succeeded is in flight as far as it knows."""
    server = sockserve(
        "run", HANDLER, *BIND, "--workers", workers, "--grace", "20",
        "--threads", "1", "--max-pending", "0",  # one request at a time; the rest wait
    )  # fmt: skip
    port = server.port()
    [listener] = listening_inodes(port)
    serving = worker_pid(server)
    with Conn(port) as first, Conn(port) as second:
        assert first.ask("echo first") == "first"  # the only thread is busy with it...
        second.sock.sendall(b"echo second\n")  # ...so this one waits in the backlog
        server.signal(signal.SIGTERM)
        server.wait_for(RECEIVED_TERM)
        assert wait_until(lambda: listener not in socket_inodes(serving))
        assert first.ask("echo done") == "done"
        first.sock.shutdown(socket.SHUT_WR)
        assert first.at_eof()
        assert second.read_line() == "second"


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_second_sigterm_aborts_the_drain(sockserve: Any, workers: str) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", workers, "--grace", "60")
    with Conn(server.port()) as in_flight:
        assert in_flight.ask("echo hold") == "hold"
        began = time.monotonic()
        server.signal(signal.SIGTERM)
        server.wait_for(RECEIVED_TERM)
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == ExitCode.OK
        assert time.monotonic() - began < 10  # not the 60 s of grace
        assert in_flight.at_eof()  # the request was cut short
    if workers == "0":
        assert server.lines(r"WARNING sockserve\.worker: second signal: aborting the drain$")
    else:
        assert server.lines(r"WARNING sockserve\.master: second stop signal: aborting 1 worker")
    assert "Traceback" not in server.output


def test_sigquit_stops_at_once(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "2", "--grace", "60")
    with Conn(server.port()) as in_flight:
        assert in_flight.ask("echo hold") == "hold"
        server.signal(signal.SIGQUIT)
        assert server.wait_exit() == ExitCode.OK
        assert in_flight.at_eof()
    assert server.lines(r"INFO sockserve\.master: stopping: SIGQUIT: stopping at once$")


def test_sigterm_to_every_process_still_drains(sockserve: Any) -> None:
    """systemd's default KillMode=control-group, ``kill -TERM -PGID`` and timeout(1) signal
    every process: a worker then hears SIGTERM twice, and must not abort its drain."""
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--grace", "20")
    port = server.port()
    [(_index, worker)] = server.started()
    with Conn(port) as in_flight:
        assert in_flight.ask("echo hold") == "hold"
        # systemd signals every process of the unit; here the worker hears it first.
        os.kill(worker, signal.SIGTERM)
        server.wait_for(RECEIVED_TERM)
        server.signal(signal.SIGTERM)
        server.wait_for(r"INFO sockserve\.master: stopping: SIGTERM: draining 1 worker\(s\), ")
        assert quiet_for(in_flight, 1.0), f"the request was aborted; {server.describe()}"
        assert in_flight.ask("echo done") == "done"
    assert server.wait_exit() == ExitCode.OK


def test_a_worker_that_lost_an_accept_race_still_stops(sockserve: Any) -> None:
    """Both workers see the shared listener readable; the one that finds nothing left to
    accept must go back to its loop (EAGAIN), not block in accept() where no drain reaches."""
    server = sockserve(
        "run", "tests.runner.targets.mod:SlowAcceptServer", *BIND, "--workers", "2",
        "--grace", "30",
    )  # fmt: skip
    port = server.port()
    assert len(server.started()) == 2
    assert ask(port, "echo taken") == "taken"  # both workers went for it; one got it
    began = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=3.0) == ExitCode.OK  # not grace + 5 s
    assert time.monotonic() - began < 3.0


def test_workers_exit_when_the_master_is_killed(sockserve: Any) -> None:
    """Orphaned workers would serve on, and hold the port, forever."""
    server = sockserve("run", HANDLER, *BIND, "--workers", "2", "--worker-timeout", "2")
    port = server.port()
    workers = [pid for _index, pid in server.started()]
    server.signal(signal.SIGKILL)  # the OOM killer, say
    assert server.proc.wait(TIMEOUT) == -signal.SIGKILL
    for pid in workers:  # within a heartbeat interval or two
        assert wait_pid_gone(pid, timeout=3.0), f"worker {pid} outlived its master"
    assert not listening_inodes(port)


# -- SIGHUP ---------------------------------------------------------------------------------


def write_module(path: Path, version: str, *, broken: bool = False) -> None:
    """A target whose every answer is ``VERSION PID``; it says on stderr who imported it."""
    path.write_text(
        "import os\n"
        "import sockserve\n"
        f"VERSION = {version!r}\n"
        'os.write(2, f"hotmod {VERSION} imported in pid {os.getpid()}\\n".encode())\n'
        + ("raise ImportError('half-deployed code')\n" if broken else "")
        + "class Handler(sockserve.StreamRequestHandler):\n"
        "    def handle(self):\n"
        "        while self.rfile.readline():\n"
        '            self.wfile.write(f"{VERSION} {os.getpid()}\\n".encode())\n'
    )


@pytest.fixture
def hot(tmp_path: Path) -> Iterator[Path]:
    """A directory on the child's PYTHONPATH holding the edited module ``hotmod``."""
    write_module(tmp_path / "hotmod.py", "v1")
    yield tmp_path


def test_sighup_under_load_serves_new_code_and_drops_nothing(sockserve: Any, hot: Path) -> None:
    server = sockserve(
        "run", "hotmod:Handler", *BIND, "--workers", "2", "--grace", "10", env=child_env(hot)
    )
    port = server.port()
    old = {pid for _index, pid in server.started()}
    with Load(port, "version") as load:
        load.wait_answers(20)
        write_module(hot / "hotmod.py", "v2-reloaded")  # deploy new code, then reload
        mark = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_for(
            r"INFO sockserve\.master: reload complete: 2 new worker\(s\), 2 old", start=mark
        )
        stopped = server.wait_for(
            r"INFO sockserve\.master: worker \d \(pid (\d+)\) stopped \(exit status 0\)$",
            count=2,
            start=mark,
        )
        assert {int(m[1]) for m in stopped} == old, server.describe()
        after_old_gone = len(load.answers)
        load.wait_answers(after_old_gone + 20)
    assert load.errors == []  # no connection refused, reset or cut short during the reload
    versions = [answer.split()[0] for answer in load.answers]
    assert versions[0] == "v1"
    assert set(versions[after_old_gone:]) == {"v2-reloaded"}
    new = {pid for _index, pid in server.started(mark)}
    assert len(new) == 2 and not new & old
    assert {int(a.split()[1]) for a in load.answers[after_old_gone:]} <= new
    # Workers import the target after the fork; the master never does.
    importers = [int(m[2]) for m in server.lines(r"^hotmod (\S+) imported in pid (\d+)$")]
    assert sorted(importers) == sorted(old | new)
    assert server.pid not in importers


def test_sighup_with_broken_code_keeps_the_old_workers(sockserve: Any, hot: Path) -> None:
    server = sockserve(
        "run", "hotmod:Handler", *BIND, "--workers", "1", "--grace", "10", env=child_env(hot)
    )
    port = server.port()
    old = {pid for _index, pid in server.started()}
    write_module(hot / "hotmod.py", "v2", broken=True)
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_for(
        r"ERROR sockserve\.master: reload failed: a new worker did not boot", start=mark
    )
    assert server.lines(r"^sockserve: error: importing 'hotmod' failed: ImportError", start=mark)
    answers = [ask(port, "version").split() for _ in range(10)]
    assert {version for version, _pid in answers} == {"v1"}
    assert {int(pid) for _version, pid in answers} <= old
    # Fixed code: the next reload goes through.
    write_module(hot / "hotmod.py", "v3")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_for(r"INFO sockserve\.master: reload complete", start=mark)
    server.wait_for(r"INFO sockserve\.master: worker 1 \(pid \d+\) stopped", start=mark)
    assert ask(port, "version").split()[0] == "v3"
    assert re.search(r"hotmod v3 imported", server.output)
    assert len(server.lines(STARTED)) == 1 + 1 + 1  # boot, failed reload, reload
