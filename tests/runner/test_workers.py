"""The master keeps N workers serving: replaced when killed or stuck, recycled, resized."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from helpers.clients import Conn
from helpers.net import TIMEOUT
from helpers.processes import (
    STARTED,
    child_env,
    children_of,
    listening_inodes,
    socket_inodes,
    sockserve_argv,
)
from sockserve.exitcodes import ExitCode

from .support import HANDLER, ask, pids_serving

BIND = ("--bind", "127.0.0.1:0")


def started_after(server: Any, mark: int) -> tuple[int, int]:
    """Wait for one "worker N started" line after ``mark``; return (index, pid)."""
    [match] = server.wait_for(STARTED, start=mark)
    return int(match[1]), int(match[2])


def test_a_killed_worker_is_replaced_and_other_clients_do_not_notice(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "2")
    port = server.port()
    index_of = {pid: index for index, pid in server.started()}
    # One persistent connection to each worker.
    conns: dict[int, Conn] = {}
    try:
        for _ in range(400):
            conn = Conn(port)
            pid = int(conn.ask("pid"))
            if pid in conns:
                conn.close()
            else:
                conns[pid] = conn
            if len(conns) == 2:
                break
        assert set(conns) == set(index_of)
        victim, survivor = sorted(conns)
        mark = server.mark()
        os.kill(victim, signal.SIGKILL)
        server.wait_for(
            rf"WARNING sockserve\.master: worker {index_of[victim]} \(pid {victim}\) exited "
            r"\(signal SIGKILL\) after [\d.]+ s; replacing it$",
            start=mark,
        )
        index, replacement = started_after(server, mark)
        assert index == index_of[victim]  # the same slot, a new process
        assert children_of(server.pid) == {survivor, replacement}
        assert conns[victim].at_eof()  # that client lost its connection with the process...
        for _ in range(3):  # ...the other worker's client did not notice anything
            assert conns[survivor].ask("pid") == str(survivor)
    finally:
        for conn in conns.values():
            conn.close()
    assert pids_serving(port, want=2) == {str(survivor), str(replacement)}


def test_sigttin_adds_a_worker_and_sigttou_removes_one(sockserve: Any) -> None:
    # (debug: the master says when a worker is ready)
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--log-level", "debug")
    port = server.port()
    [(_index, first)] = server.started()
    assert children_of(server.pid) == {first}

    mark = server.mark()
    server.signal(signal.SIGTTIN)
    server.wait_for(r"INFO sockserve\.master: SIGTTIN: 2 worker\(s\) wanted$", start=mark)
    index, second = started_after(server, mark)
    assert index == 2
    assert children_of(server.pid) == {first, second}
    server.wait_for(rf"DEBUG sockserve\.master: worker 2 \(pid {second}\) ready$", start=mark)

    mark = server.mark()
    server.signal(signal.SIGTTOU)
    server.wait_for(r"INFO sockserve\.master: SIGTTOU: 1 worker\(s\) wanted$", start=mark)
    server.wait_for(rf"worker 2 \(pid {second}\) stopped \(exit status 0\)$", start=mark)
    assert children_of(server.pid) == {first}  # reaped: not even a zombie is left
    assert ask(port) == str(first)

    # Never fewer than one.
    mark = server.mark()
    server.signal(signal.SIGTTOU)
    server.wait_for(r"INFO sockserve\.master: SIGTTOU: 1 worker\(s\) wanted$", start=mark)
    assert ask(port) == str(first)
    assert len(server.lines(STARTED)) == 2


def test_a_worker_whose_serving_loop_is_stuck_is_killed_and_replaced(sockserve: Any) -> None:
    server = sockserve(
        "run", HANDLER, *BIND, "--workers", "1", "--worker-class", "sync",
        "--worker-timeout", "0.5", "--idle-timeout", "none",
    )  # fmt: skip
    port = server.port()
    [(_index, stuck)] = server.started()
    with Conn(port) as blocked:
        # A sync worker runs the handler in its serving loop: this blocks the loop forever.
        blocked.sock.sendall(b"block\n")
        began = time.monotonic()
        mark = server.mark()
        # (Under load it may be said twice: the worker is not reaped yet at the next tick.)
        match, *_again = server.wait_for(
            rf"ERROR sockserve\.master: worker 1 \(pid {stuck}\) made no progress for "
            r"([\d.]+) s: killing it$",
            start=mark,
        )
        assert float(match[1]) >= 0.5
        assert time.monotonic() - began < 0.5 + 3.0  # the timeout, plus the heartbeat's slack
        server.wait_for(rf"worker 1 \(pid {stuck}\) exited \(signal SIGKILL\)", start=mark)
        _index, replacement = started_after(server, mark)
        assert blocked.at_eof()
    assert ask(port) == str(replacement)
    assert children_of(server.pid) == {replacement}


def test_max_requests_recycles_workers_without_failing_a_connection(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--max-requests", "20")
    port = server.port()
    served: list[str] = []
    deadline = time.monotonic() + 20
    while len(set(served)) < 3 and time.monotonic() < deadline:
        served.append(ask(port))  # any refused or reset connection fails the test here
    assert len(set(served)) == 3, f"no recycling; {server.describe()}"
    recycled = server.wait_for(
        r"^\[(\d+)\] INFO sockserve\.worker: served (\d+) connections: recycling this worker$",
        count=2,
    )
    counts = Counter(served)
    for match in recycled:
        assert int(match[2]) == 20  # it stopped accepting at its budget...
        # ...then served what was already queued (our client connects again as soon as
        # it has an answer), rather than reset it.
        assert 20 <= counts[match[1]] <= 2 * 20
    assert server.wait_for(r"worker 1 \(pid \d+\) exited \(exit status 0\) after .*replacing it")


def test_pid_file_is_written_and_removed(sockserve: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "sockserve.pid"
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--pid-file", str(pid_file))
    server.port()
    assert pid_file.read_text() == f"{server.pid}\n"
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == ExitCode.OK
    assert not pid_file.exists()


def test_pid_file_is_removed_after_a_boot_failure(sockserve: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "sockserve.pid"
    server = sockserve(
        "run", "tests.runner.targets.broken:Handler", *BIND, "--workers", "1",
        "--pid-file", str(pid_file),
    )  # fmt: skip
    assert server.wait_exit() == ExitCode.IMPORT
    assert not pid_file.exists()


def test_pid_file_without_worker_processes(sockserve: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "echo.pid"
    server = sockserve("echo", *BIND, "--pid-file", str(pid_file))
    server.port()
    assert pid_file.exists() and pid_file.read_text() == f"{server.pid}\n"


def test_reuse_port_gives_each_worker_its_own_listening_socket(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "2", "--reuse-port")
    port = server.port()
    workers = [pid for _index, pid in server.started()]
    listening = listening_inodes(port)
    assert len(listening) == 2  # two sockets listen on the port...
    owned = [socket_inodes(pid) & listening for pid in workers]
    assert owned[0] and owned[1] and not owned[0] & owned[1]  # ...one in each worker
    # The master keeps a copy of each, so that a worker's queue outlives the worker.
    assert socket_inodes(server.pid) & listening == listening
    # The kernel spreads connections (by their addresses) over the two sockets.
    assert pids_serving(port, want=2, attempts=200) == {str(pid) for pid in workers}


def test_every_write_to_stderr_is_whole_lines() -> None:
    """Several processes share one stderr: each must write whole lines at once.

    The child's stderr is a SOCK_SEQPACKET socket, which keeps each write()
    apart as one message.
    """
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with reader:
        with writer:
            proc = subprocess.Popen(
                sockserve_argv(
                    "run", "tests.runner.targets.broken:Handler", *BIND, "--workers", "1"
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=writer.fileno(),
                env=child_env(),
                start_new_session=True,
            )
        try:
            reader.settimeout(TIMEOUT)
            writes = []
            while message := reader.recv(65536):
                writes.append(message)
            assert proc.wait(TIMEOUT) == ExitCode.IMPORT
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(TIMEOUT)
    assert any(w.startswith(b"sockserve: error: importing") for w in writes), writes
    assert [w for w in writes if not w.endswith(b"\n")] == []
