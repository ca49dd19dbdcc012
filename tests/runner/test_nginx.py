"""A real nginx ``stream`` proxy in front of sockserve: spread, rolling restart, PROXY protocol.

nginx runs deploy/nginx/sockserve-stream.conf (two instances, rolling restart)
and deploy/nginx/sockserve-stream-proxy-protocol.conf (``proxy_protocol on``)
itself, with the test's addresses put in. nginx and its stream module are Debian packages
(``apt-get install nginx libnginx-mod-stream``); without them this test
skips, except in CI, where it fails (``helpers.programs``).
"""

from __future__ import annotations

import re
import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers.processes import REPO, child_env, run
from helpers.programs import missing, require_program
from sockserve.exitcodes import ExitCode

from .support import HANDLER, Load, ask, ask_from, held_from, render_deploy_config

CONFIG = REPO / "deploy" / "nginx" / "sockserve-stream.conf"
PROXY_CONFIG = REPO / "deploy" / "nginx" / "sockserve-stream-proxy-protocol.conf"
INSTALL = "apt-get install nginx libnginx-mod-stream"
WORKER_EXITED = r"\[notice\] \d+#\d+: worker process \d+ exited with code 0$"


@pytest.fixture(scope="module")
def nginx() -> tuple[str, str]:
    """The nginx binary, and the load_module line its stream module needs (or "")."""
    binary = require_program("nginx", INSTALL)
    version = run([binary, "-V"])
    assert version.returncode == 0, version.stderr
    built = version.stderr
    if re.search(r"--with-stream(\s|$)", built):
        return binary, ""  # built in
    modules = re.search(r"--modules-path=(\S+)", built)
    module = Path(modules[1] if modules else "/usr/lib/nginx/modules") / "ngx_stream_module.so"
    if "--with-stream=dynamic" not in built or not module.exists():
        missing(f"nginx's stream module not installed: {INSTALL}")
    return binary, f"load_module {module};"


def render(replacements: dict[str, str]) -> str:
    """The stream configuration with each address replaced in its one line."""
    return render_deploy_config(CONFIG, replacements)


def start_nginx(
    spawn: Any, nginx: tuple[str, str], tmp_path: Path, stream_conf: Path, front: socket.socket
) -> Any:
    """nginx with ``stream_conf`` included, serving on the listening socket ``front``."""
    binary, load_module = nginx
    main_conf = tmp_path / "nginx.conf"
    main_conf.write_text(
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {tmp_path}/nginx.pid;\n"
        "error_log stderr notice;\n"
        f"{load_module}\n"
        "events { worker_connections 1024; }\n"
        f"include {stream_conf};\n"
    )
    # nginx takes the listening socket from us, as in its binary upgrade: no port race.
    proxy = spawn(
        [binary, "-e", "stderr", "-p", str(tmp_path), "-c", str(main_conf)],
        env=child_env(NGINX=f"{front.fileno()};"),
        pass_fds=[front.fileno()],
    )
    proxy.wait_for(r"\[notice\] \d+#\d+: start worker process \d+$")
    assert proxy.lines(r'using inherited sockets from "\d+;"$')
    return proxy


def instance(sockserve: Any, name: str, port: int = 0) -> Any:
    return sockserve(
        "run", HANDLER, "--bind", f"127.0.0.1:{port}", "--workers", "1", "--no-access-log",
        "--grace", "10", env=child_env(SOCKSERVE_TEST_ID=name),
    )  # fmt: skip


def test_rolling_restart_behind_nginx_loses_no_connection(
    sockserve: Any, spawn: Any, nginx: tuple[str, str], tmp_path: Path
) -> None:
    s1, s2 = instance(sockserve, "s1"), instance(sockserve, "s2")
    port1, port2 = s1.port(), s2.port()
    stream_conf = tmp_path / "sockserve-stream.conf"

    def configure(s1_down: bool) -> None:
        stream_conf.write_text(
            render({
                "127.0.0.1:7001 max_fails=1 fail_timeout=5s": f"127.0.0.1:{port1} "
                + ("down" if s1_down else "max_fails=1 fail_timeout=5s"),
                "127.0.0.1:7002": f"127.0.0.1:{port2}",
                "127.0.0.1:7000": f"127.0.0.1:{front_port}",
            })
        )  # fmt: skip

    with socket.create_server(("127.0.0.1", 0)) as front:
        front_port = front.getsockname()[1]
        configure(s1_down=False)
        proxy = start_nginx(spawn, nginx, tmp_path, stream_conf, front)

    spread = Counter(ask(front_port, "id") for _ in range(10))
    assert set(spread) == {"s1", "s2"}

    with Load(front_port, "id") as load:
        load.wait_answers(20)
        # 1. Take s1 out: `down`, and a reload (old nginx workers finish their connections).
        configure(s1_down=True)
        mark = proxy.mark()
        proxy.signal(signal.SIGHUP)
        proxy.wait_for(WORKER_EXITED, start=mark)
        # 2. Stop it: requests in flight finish, then it exits.
        s1.signal(signal.SIGTERM)
        assert s1.wait_exit() == ExitCode.OK
        down_from = len(load.answers)
        load.wait_answers(down_from + 20)
        assert set(load.answers[down_from:]) == {"s2"}
        # 3. Start it again on the same port, and put it back.
        s1 = instance(sockserve, "s1", port1)
        assert s1.port() == port1
        configure(s1_down=False)
        mark = proxy.mark()
        proxy.signal(signal.SIGHUP)
        proxy.wait_for(WORKER_EXITED, start=mark)
        back_from = len(load.answers)
        load.wait_answer(lambda answer: answer == "s1", start=back_from)
        load.wait_answers(len(load.answers) + 20)
    assert load.errors == []
    assert not re.search(r"\[(error|crit|alert|emerg)\]", proxy.output), proxy.output


def test_nginx_proxy_protocol_tells_sockserve_each_clients_own_address(
    sockserve: Any, spawn: Any, nginx: tuple[str, str], tmp_path: Path
) -> None:
    server = sockserve(
        "run", HANDLER, "--bind", "127.0.0.1:0", "--workers", "1", "--grace", "5",
        "--proxy-protocol", "v1", "--proxy-allow", "127.0.0.1/32",
        "--deny", "127.0.0.4", "--max-per-ip", "1",
    )  # fmt: skip
    port = server.port()
    stream_conf = tmp_path / PROXY_CONFIG.name
    with socket.create_server(("127.0.0.1", 0)) as front:
        front_port = front.getsockname()[1]
        stream_conf.write_text(
            render_deploy_config(PROXY_CONFIG, {
                "127.0.0.1:7001": f"127.0.0.1:{port}",
                "127.0.0.1:7000": f"127.0.0.1:{front_port}",
            })
        )  # fmt: skip
        proxy = start_nginx(spawn, nginx, tmp_path, stream_conf, front)
    assert ask_from(front_port, "127.0.0.2", "addr") == "127.0.0.2"
    assert ask_from(front_port, "127.0.0.3", "addr") == "127.0.0.3"
    assert ask_from(front_port, "127.0.0.4", "addr") is None  # --deny, on the real client
    # (Addresses not used yet: the end of an earlier connection frees its
    # slot a moment after the client sees it end.)
    with held_from(front_port, "127.0.0.5") as first:
        assert first.ask("addr") == "127.0.0.5"
        assert ask_from(front_port, "127.0.0.5", "addr") is None  # --max-per-ip
        assert ask_from(front_port, "127.0.0.6", "addr") == "127.0.0.6"
    refused = server.wait_for(r".*refused connection from (\S+?):\d+: (\S+) reached$", count=2)
    assert sorted(f"{m[1]} {m[2]}" for m in refused) == [
        "127.0.0.4 deny",
        "127.0.0.5 max_connections_per_ip",
    ]
    assert not server.lines(r".*(ERROR|Traceback|proxy:).*"), server.output
    assert not re.search(r"\[(crit|alert|emerg)\]", proxy.output), proxy.output
