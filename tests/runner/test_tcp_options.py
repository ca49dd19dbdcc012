"""The runner's TCP options: --tcp-keepalive (and its interval and count), --tcp-user-timeout."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.clients import connect, receive_until_eof
from helpers.processes import run, sockserve_argv
from sockserve.exitcodes import ExitCode

TARGETS = "tests.runner.targets.tcpopts"


@pytest.mark.parametrize("handler", ["Report", "AsyncReport"])
def test_workers_set_the_flags_on_every_connection(sockserve: Any, handler: str) -> None:
    server = sockserve(
        "run", f"{TARGETS}:{handler}", "--workers", "1",
        "--tcp-keepalive", "30", "--tcp-keepalive-interval", "5",
        "--tcp-keepalive-count", "4", "--tcp-user-timeout", "12.5",
    )  # fmt: skip
    port = server.port()
    for _ in range(2):
        with connect(("127.0.0.1", port)) as sock:
            report = [int(word) for word in receive_until_eof(sock).split()]
        assert report[:5] == [1, 30, 5, 4, 12500]
    assert server.stop() == ExitCode.OK


def test_keepalive_on_with_the_kernels_times(sockserve: Any) -> None:
    server = sockserve("run", f"{TARGETS}:Report", "--workers", "0", "--tcp-keepalive", "on")
    with connect(("127.0.0.1", server.port())) as sock:
        report = [int(word) for word in receive_until_eof(sock).split()]
    assert (report[0], report[4]) == (1, 0)
    assert server.stop() == ExitCode.OK


def test_an_interval_without_keepalive_is_refused() -> None:
    result = run(sockserve_argv("echo", "--tcp-keepalive-interval", "5"))
    assert result.returncode == ExitCode.USAGE
    assert (
        "tcp_keepalive_interval needs tcp_keepalive (true, or the seconds before the first "
        "probe) (tcp_keepalive_interval from --tcp-keepalive-interval)"
    ) in result.stderr


def test_check_config_shows_them() -> None:
    result = run(
        sockserve_argv(
            "echo", "--tcp-keepalive", "60", "--tcp-user-timeout", "30", "--check-config"
        )
    )
    assert result.returncode == 0, result.stderr
    assert "tcp_keepalive = 60.0\n" in result.stdout
    assert "tcp_user_timeout = 30.0\n" in result.stdout
