"""systemd's two protocols, played by the test: socket activation and sd_notify readiness."""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import Conn
from helpers.net import TIMEOUT
from helpers.processes import child_env
from sockserve.exitcodes import ExitCode

from .support import HANDLER, Load, ask, pids_serving

# What systemd does between fork and exec: the sockets at fds 3, 4, ...; LISTEN_PID
# names the process that is to take them, so it is set by that process itself.
ACTIVATED = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="sockserve")
from sockserve.cli import main
sys.exit(main(sys.argv[2:]))
"""


def activated_argv(fd: int, *args: str) -> list[str]:
    return [sys.executable, "-X", "dev", "-c", ACTIVATED, str(fd), *args]


class Notifications:
    """The NOTIFY_SOCKET end: a Unix datagram socket the service reports to."""

    def __init__(self, path: Path) -> None:
        assert len(str(path)) < 100, path  # sun_path is short
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def next(self, timeout: float = TIMEOUT) -> dict[str, str]:
        """The next message, as its ``KEY=VALUE`` lines."""
        self.sock.settimeout(timeout)
        message = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in message.splitlines())


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notifications]:
    notifications = Notifications(tmp_path / "notify")
    with notifications.sock:
        yield notifications


def test_socket_activation_serves_the_passed_socket(spawn: Any, notify: Notifications) -> None:
    with socket.create_server(("127.0.0.1", 0)) as passed:
        port = passed.getsockname()[1]
        server = spawn(
            activated_argv(passed.fileno(), "run", HANDLER, "--workers", "2"),
            env=child_env(NOTIFY_SOCKET=str(notify.path)),
            pass_fds=[passed.fileno()],
        )
        assert server.listening() == [f"tcp://127.0.0.1:{port}"]
    # Our copy is closed: the service's copy is the one that listens now.
    ready = notify.next()
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(server.pid)
    assert ready["STATUS"] == "serving with 2 worker(s)"
    workers = {str(pid) for _index, pid in server.started()}
    assert pids_serving(port, want=2) == workers  # both workers accept from it
    server.signal(signal.SIGTERM)
    assert notify.next() == {"STOPPING": "1"}
    assert server.wait_exit() == ExitCode.OK


def test_a_restart_loses_nothing_while_systemd_holds_the_socket(spawn: Any) -> None:
    """systemd keeps the socket of sockserve.socket open across restarts of the service:
    clients that come while no sockserve runs wait in the backlog for the next one."""
    with socket.create_server(("127.0.0.1", 0)) as held:  # our copy is systemd's
        port = held.getsockname()[1]

        def start() -> Any:
            server = spawn(
                activated_argv(held.fileno(), "run", HANDLER, "--workers", "1", "--no-access-log"),
                pass_fds=[held.fileno()],
            )
            assert server.listening() == [f"tcp://127.0.0.1:{port}"]
            return server

        first = start()
        with Load(port, "pid") as load:
            load.wait_answers(20)
            first.signal(signal.SIGTERM)  # systemctl restart: stop...
            assert first.wait_exit() == ExitCode.OK
            stopped_at = len(load.answers)
            second = start()  # ...and start again
            [(_index, new_worker)] = second.started()
            load.wait_answer(lambda answer: answer == str(new_worker), start=stopped_at)
            load.wait_answers(len(load.answers) + 20)
    assert load.errors == []


def test_socket_activation_ignores_sockets_meant_for_another_process(spawn: Any) -> None:
    """LISTEN_PID is not ours: bind what the command line says, leave fd 3 alone."""
    wrapper = ACTIVATED.replace("str(os.getpid())", "str(os.getppid())")
    with socket.create_server(("127.0.0.1", 0)) as passed:
        server = spawn(
            [sys.executable, "-c", wrapper, str(passed.fileno()), "run", HANDLER, "--workers", "1"],
            pass_fds=[passed.fileno()],
        )
        [spec] = server.listening()
        assert spec.startswith("tcp://127.0.0.1:")
        assert spec != f"tcp://127.0.0.1:{passed.getsockname()[1]}"  # the default bind
    assert ask(int(spec.rpartition(":")[2]), "echo ok") == "ok"


def test_notify_ready_reloading_stopping(sockserve: Any, notify: Notifications) -> None:
    server = sockserve(
        "run", HANDLER, "--bind", "127.0.0.1:0", "--workers", "1",
        env=child_env(NOTIFY_SOCKET=str(notify.path)),
    )  # fmt: skip
    port = server.port()
    assert notify.next()["READY"] == "1"

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    server.signal(signal.SIGHUP)
    reloading = notify.next()
    assert reloading["RELOADING"] == "1"
    # Type=notify-reload wants the time of the reload request, on CLOCK_MONOTONIC.
    assert before <= int(reloading["MONOTONIC_USEC"])
    assert int(reloading["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notify.next()["READY"] == "1"  # once the new workers serve
    server.wait_for(r"INFO sockserve\.master: reload complete")
    server.wait_for(r"INFO sockserve\.master: worker 1 \(pid \d+\) stopped")  # the old one
    assert ask(port, "echo after reload") == "after reload"

    with Conn(port) as in_flight:
        assert in_flight.ask("echo hold") == "hold"
        server.signal(signal.SIGTERM)
        assert notify.next() == {"STOPPING": "1"}  # at the start of the drain
        assert in_flight.ask("echo done") == "done"
    assert server.wait_exit() == ExitCode.OK


def test_notify_ready_without_worker_processes(sockserve: Any, notify: Notifications) -> None:
    server = sockserve(
        "echo", "--bind", "127.0.0.1:0", env=child_env(NOTIFY_SOCKET=str(notify.path))
    )
    server.port()  # it serves...
    assert notify.next(timeout=2.0)["READY"] == "1"  # ...and should say so
