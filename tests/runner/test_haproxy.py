"""A real HAProxy in front of two sockserve instances: spread, health checks, rolling restart.

HAProxy runs deploy/haproxy/haproxy.cfg itself, with the test's addresses put in, so
the documented configuration is the tested one. HAProxy is a Debian package
(``apt-get install haproxy``); .ci/run installs it. Without it this test skips,
except in CI, where it fails (``helpers.programs``).
"""

from __future__ import annotations

import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers.net import TIMEOUT, wait_until
from helpers.processes import REPO, child_env
from helpers.programs import require_program
from sockserve.exitcodes import ExitCode

from .support import HANDLER, Load, ask, render_deploy_config

CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
BACKEND = "sockserve"


@pytest.fixture(scope="module")
def haproxy_binary() -> str:
    return require_program("haproxy", "apt-get install haproxy")


def render_config(replacements: dict[str, str]) -> str:
    """deploy/haproxy/haproxy.cfg with each address replaced in its one configuration line."""
    return render_deploy_config(CONFIG, replacements)


def admin(path: Path, command: str) -> str:
    """One command on HAProxy's admin socket; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def admin_ready(path: Path) -> bool:
    try:
        return "be_name" in admin(path, f"show servers state {BACKEND}")
    except (FileNotFoundError, ConnectionRefusedError):
        return False


def instance(sockserve: Any, name: str, port: int = 0, workers: str = "1") -> Any:
    return sockserve(
        "run", HANDLER, "--bind", f"127.0.0.1:{port}", "--workers", workers,
        "--no-access-log", "--grace", "10", env=child_env(SOCKSERVE_TEST_ID=name),
    )  # fmt: skip


def start_haproxy(
    spawn: Any, binary: str, tmp_path: Path, port1: int, port2: int
) -> tuple[Any, int, Path]:
    """HAProxy on deploy/haproxy/haproxy.cfg; returns it, its frontend port and its admin socket."""
    admin_socket = tmp_path / "haproxy.sock"
    with socket.create_server(("127.0.0.1", 0)) as front:
        # HAProxy takes the listening socket from us (bind fd@N): no free-port race.
        front_port = front.getsockname()[1]
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            render_config({
                "127.0.0.1:7000": f"fd@{front.fileno()}",
                "127.0.0.1:7001": f"127.0.0.1:{port1}",
                "127.0.0.1:7002": f"127.0.0.1:{port2}",
                "/run/haproxy/sockserve.sock": str(admin_socket),
            })
        )  # fmt: skip
        haproxy = spawn([binary, "-f", str(config), "-db"], pass_fds=[front.fileno()])
    assert wait_until(lambda: admin_ready(admin_socket)), haproxy.describe()
    return haproxy, front_port, admin_socket


def test_rolling_restart_behind_haproxy_loses_no_connection(
    sockserve: Any, spawn: Any, haproxy_binary: str, tmp_path: Path
) -> None:
    s1, s2 = instance(sockserve, "s1"), instance(sockserve, "s2")
    port1, port2 = s1.port(), s2.port()
    haproxy, front_port, admin_socket = start_haproxy(spawn, haproxy_binary, tmp_path, port1, port2)

    # Round robin over both instances.
    spread = Counter(ask(front_port, "id") for _ in range(10))
    assert spread == {"s1": 5, "s2": 5}

    with Load(front_port, "id") as load:
        load.wait_answers(20)
        # 1. Drain s1: HAProxy sends it no new connection; those it has finish.
        assert admin(admin_socket, f"set server {BACKEND}/s1 state drain").strip() == ""
        drained_from = len(load.answers)
        load.wait_answers(drained_from + 20)
        # 2. Stop it: SIGTERM lets what is in flight finish, then it exits.
        mark = haproxy.mark()
        s1.signal(signal.SIGTERM)
        assert s1.wait_exit() == ExitCode.OK
        haproxy.wait_for(rf"Server {BACKEND}/s1 is DOWN", start=mark)
        down_from = len(load.answers)
        load.wait_answers(down_from + 20)
        assert set(load.answers[down_from:]) == {"s2"}  # the other one serves everything
        # 3. Start it again on the same port; the health check finds it...
        mark = haproxy.mark()
        s1 = instance(sockserve, "s1", port1)
        assert s1.port() == port1
        haproxy.wait_for(rf"Server {BACKEND}/s1 is UP", start=mark)
        # 4. ...and once readied it takes its share again.
        back_from = len(load.answers)
        assert admin(admin_socket, f"set server {BACKEND}/s1 state ready").strip() == ""
        load.wait_answer(lambda answer: answer == "s1", start=back_from)
        load.wait_answers(len(load.answers) + 20)
    assert load.errors == []  # no connection refused, reset or cut short, all along
    assert len(load.answers) > 100
    assert Counter(load.answers[back_from:])["s1"] > 0
    assert "[ALERT]" not in haproxy.output
    assert "s1 is DOWN" in haproxy.output and "s2 is DOWN" not in haproxy.output
