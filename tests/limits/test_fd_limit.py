"""The start-up check of RLIMIT_NOFILE against max_connections.

Each case runs a server in a child process whose limit is lowered first
(``helpers/fdlimit_server.py``; the runner under ``prlimit``), so the test
run's own limit is never touched. 1000 connections need 1000 + 64 (the
margin) descriptors.
"""

from __future__ import annotations

import re
import resource
import shutil
from typing import Any

import pytest

from helpers.processes import TESTS, child_env, helper_argv, run, sockserve_argv
from sockserve.exitcodes import ExitCode

RAISED = (
    r"INFO sockserve\.server: 127\.0\.0\.1:\d+: raised the soft limit on open files "
    r"from 256 to 1064 for max_connections=1000\n"
)
#: The test run's hard limit: the children may lower it, not raise it.
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if HARD == resource.RLIM_INFINITY:
    HARD = 1 << 20


def needs_hard(limit: int) -> pytest.MarkDecorator:
    return pytest.mark.skipif(limit > HARD, reason=f"the hard RLIMIT_NOFILE is under {limit}")


SHORT = (
    r"WARNING sockserve\.server: 127\.0\.0\.1:\d+: max_connections=1000 needs about 1064 open "
    r"files, but the limit is 512 \(hard limit 512\): beyond about 448 connections accept\(\) "
    r"fails with EMFILE and clients wait in the backlog\. Raise the limit \(ulimit -n 1064 "
    r"before starting; LimitNOFILE=1064 in a systemd unit\) or lower max_connections\n"
)


def serve_under(soft: int, hard: int, cls: str, max_connections: str) -> tuple[str, str]:
    """(stderr, the "LIMIT soft hard" line) of the helper server."""
    result = run(
        helper_argv("fdlimit_server", str(soft), str(hard), cls, max_connections),
        env=child_env(TESTS),
    )
    assert result.returncode == 0, result.stderr
    return result.stderr, result.stdout.strip()


@needs_hard(1064)
@pytest.mark.parametrize("cls", ["ThreadPoolTCPServer", "ThreadingTCPServer", "AsyncTCPServer"])
def test_a_low_soft_limit_is_raised_to_what_max_connections_needs(cls: str) -> None:
    stderr, limit = serve_under(256, HARD, cls, "1000")
    assert limit == f"LIMIT 1064 {HARD}"
    assert len(re.findall(RAISED, stderr)) == 1  # once, though it served twice
    assert "WARNING" not in stderr


def test_short_of_the_hard_limit_it_raises_what_it_can_and_warns_with_the_numbers() -> None:
    stderr, limit = serve_under(256, 512, "ThreadPoolTCPServer", "1000")
    assert limit == "LIMIT 512 512"
    assert len(re.findall(SHORT, stderr)) == 1, stderr


@needs_hard(4000)
def test_a_limit_high_enough_is_left_alone() -> None:
    stderr, limit = serve_under(2000, 4000, "ThreadPoolTCPServer", "1000")
    assert limit == "LIMIT 2000 4000"
    assert "open files" not in stderr


def test_without_max_connections_nothing_is_checked() -> None:
    """The stdlib-named classes have no limit: there is nothing to compare with."""
    stderr, limit = serve_under(256, 512, "TCPServer", "default")
    assert limit == "LIMIT 256 512"
    assert "open files" not in stderr


@needs_hard(4096 + 64)
def test_the_default_pool_limit_is_checked_too() -> None:
    stderr, limit = serve_under(1024, HARD, "ThreadPoolTCPServer", "default")
    assert limit == f"LIMIT {4096 + 64} {HARD}"
    assert "for max_connections=4096" in stderr


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
@pytest.mark.parametrize(
    ("hard", "expected"),
    [
        pytest.param(
            HARD,
            "raised the soft limit on open files from 256 to 2064 for max_connections=2000",
            marks=needs_hard(2064),
        ),
        (512, "max_connections=2000 needs about 2064 open files, but the limit is 512"),
    ],
)
def test_the_runner_master_checks_before_forking(spawn: Any, hard: int, expected: str) -> None:
    """Two stream listeners of 1000: the master raises (or warns) once, workers inherit it."""
    argv = sockserve_argv(
        "echo", "--workers", "2", "--max-connections", "1000",
        "--bind", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--bind", "udp://127.0.0.1:0",
    )  # fmt: skip
    server = spawn(["prlimit", f"--nofile=256:{hard}", *argv], env=child_env())
    server.listening(3)
    pids = [pid for _index, pid in server.started()]
    assert len(pids) == 2
    assert server.output.count(expected) == 1, server.output
    # The workers' servers stay quiet: only the master's lines (raised; and short, at 512).
    assert server.output.count("open files") == (1 if hard > 2064 else 2)
    for pid in pids:
        assert _soft_limit(pid) == min(2064, hard)
    assert server.stop() == ExitCode.OK


def _soft_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")
