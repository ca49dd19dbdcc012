"""A real HAProxy in front of sockserve: spread, health checks, rolling restart, PROXY protocol.

HAProxy runs deploy/haproxy/haproxy.cfg (two instances, rolling restart) and
deploy/haproxy/haproxy-proxy-protocol.cfg (``send-proxy``/``send-proxy-v2``)
itself, with the test's addresses put in, so the documented configurations
are the tested ones. Clients bound to distinct loopback addresses (127.0.0.2,
127.0.0.3, ...) show that sockserve sees each one's own address through
HAProxy. HAProxy is a Debian package (``apt-get install haproxy``); .ci/run
installs it. Without it these tests skip, except in CI, where they fail
(``helpers.programs``).
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

from .support import HANDLER, Load, ask, ask_from, held_from, render_deploy_config

CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
PROXY_CONFIG = REPO / "deploy" / "haproxy" / "haproxy-proxy-protocol.cfg"
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


def launch(
    spawn: Any, binary: str, tmp_path: Path, config: Path, replacements: dict[str, str]
) -> tuple[Any, int]:
    """HAProxy on ``config`` (its frontend address taken from us); it and its frontend port."""
    with socket.create_server(("127.0.0.1", 0)) as front:
        # HAProxy takes the listening socket from us (bind fd@N): no free-port race.
        front_port = front.getsockname()[1]
        rendered = tmp_path / config.name
        rendered.write_text(
            render_deploy_config(config, {"127.0.0.1:7000": f"fd@{front.fileno()}", **replacements})
        )
        haproxy = spawn([binary, "-f", str(rendered), "-db"], pass_fds=[front.fileno()])
    return haproxy, front_port


def start_haproxy(
    spawn: Any, binary: str, tmp_path: Path, port1: int, port2: int
) -> tuple[Any, int, Path]:
    """HAProxy on deploy/haproxy/haproxy.cfg; returns it, its frontend port and its admin socket."""
    admin_socket = tmp_path / "haproxy.sock"
    haproxy, front_port = launch(
        spawn, binary, tmp_path, CONFIG, {
            "127.0.0.1:7001": f"127.0.0.1:{port1}",
            "127.0.0.1:7002": f"127.0.0.1:{port2}",
            "/run/haproxy/sockserve.sock": str(admin_socket),
        },
    )  # fmt: skip
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


# -- the PROXY protocol ----------------------------------------------------------------

#: The access-log line of a health check (check-send-proxy: a header, then a reset).
HEALTH_CHECK = r"INFO sockserve\.access: 127\.0\.0\.1:\d+ empty "
#: Log lines that would mean a failure (a refusal is logged at WARNING: see ``refusals``).
FAILURES = r"(ERROR|CRITICAL|Traceback|proxy:|disconnected|timed out)"


def proxied_instance(sockserve: Any, *flags: str) -> Any:
    return sockserve(
        "run", HANDLER, "--bind", "127.0.0.1:0", "--workers", "1", "--grace", "5",
        "--proxy-protocol", "auto", "--proxy-allow", "127.0.0.1/32", *flags,
    )  # fmt: skip


#: The log line of a refusal: the client and the limit.
REFUSED = r".*refused connection from (\S+?):\d+: (\S+) reached$"


def refusals(server: Any, count: int) -> list[str]:
    """The clients and limits of the server's first ``count`` "refused connection" lines."""
    return sorted(f"{m[1]} {m[2]}" for m in server.wait_for(REFUSED, count=count))


@pytest.mark.parametrize("keyword", ["send-proxy", "send-proxy-v2"])
def test_haproxy_tells_sockserve_each_clients_own_address(
    sockserve: Any, spawn: Any, haproxy_binary: str, tmp_path: Path, keyword: str
) -> None:
    server = proxied_instance(sockserve, "--deny", "127.0.0.4", "--max-per-ip", "1")
    port = server.port()
    haproxy, front = launch(
        spawn, haproxy_binary, tmp_path, PROXY_CONFIG,
        {"127.0.0.1:7001": f"127.0.0.1:{port}", "send-proxy-v2 check": f"{keyword} check"},
    )  # fmt: skip
    # Health checks with a header of their own (check-send-proxy), reset at once:
    # ended quietly, no handler, no error.
    server.wait_for(HEALTH_CHECK, count=2)
    assert ask_from(front, "127.0.0.2", "addr") == "127.0.0.2"
    assert ask_from(front, "127.0.0.3", "addr") == "127.0.0.3"
    # --deny judges the real client.
    assert ask_from(front, "127.0.0.4", "addr") is None
    # --max-per-ip counts real clients: a second connection of 127.0.0.5 is
    # refused while its first is open; 127.0.0.6, behind the same proxy, is not.
    # (Addresses not used yet: the end of an earlier connection frees its
    # slot a moment after the client sees it end.)
    with held_from(front, "127.0.0.5") as first:
        assert first.ask("addr") == "127.0.0.5"
        assert ask_from(front, "127.0.0.5", "addr") is None, server.output
        assert ask_from(front, "127.0.0.6", "addr") == "127.0.0.6", server.output
    assert refusals(server, 2) == [
        "127.0.0.4 deny",
        "127.0.0.5 max_connections_per_ip",
    ]
    assert not server.lines(f".*{FAILURES}.*"), server.output
    assert "[ALERT]" not in haproxy.output and "is DOWN" not in haproxy.output


def test_a_direct_client_cannot_forge_its_address(sockserve: Any) -> None:
    """Only --proxy-allow peers are believed: a header from anyone else is the client's data."""
    server = proxied_instance(sockserve)
    port = server.port()
    forged = "PROXY TCP4 203.0.113.9 127.0.0.1 4000 7000"
    with held_from(port, "127.0.0.2") as direct:
        assert direct.ask(forged) == "?"  # a line the handler does not know
        assert direct.ask("addr") == "127.0.0.2"
    # From a trusted address the header is required: a plain client is refused.
    assert ask_from(port, "127.0.0.1", "addr") is None
    server.wait_for(r".*client 127\.0\.0\.1:\d+: proxy:missing")
