"""What ``sockserve run`` serves, and how it fails: target kinds, exit codes, --check-config."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import Conn
from helpers.processes import STARTED, child_env, run
from sockserve.exitcodes import ExitCode

from .support import HANDLER, ask, pids_serving

BIND = ("--bind", "127.0.0.1:0")
ERROR_LINE = r"^sockserve: error: .*$"


def assert_clean(output: str) -> None:
    assert "Traceback" not in output
    assert "Warning" not in output


@pytest.mark.parametrize(
    "target",
    [
        HANDLER,
        "tests.runner.targets.mod:PidServer",
        "tests.runner.targets.mod:make_server",
    ],
    ids=["handler-class", "server-class", "factory"],
)
def test_two_workers_serve_every_kind_of_target(sockserve: Any, target: str) -> None:
    server = sockserve("run", target, *BIND, "--workers", "2")
    port = server.port()
    workers = {str(pid) for _index, pid in server.started()}
    assert len(workers) == 2
    # Each worker accepts from the shared listener: over enough connections both answer.
    assert pids_serving(port, want=2) == workers
    with Conn(port) as conn:  # and a connection is a conversation, not one line
        assert conn.ask("echo one") == "one"
        assert conn.ask("echo two") == "two"
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == ExitCode.OK
    assert_clean(server.output)


def test_a_builtin_service_is_a_target(sockserve: Any) -> None:
    server = sockserve("run", "echo", *BIND, "--workers", "2")
    port = server.port()
    assert server.lines(r"^\[\d+\] INFO sockserve\.master: echo listening on tcp://127\.0\.0\.1:")
    with Conn(port) as conn:
        assert conn.ask("anything at all") == "anything at all"
    assert len(server.started()) == 2
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == ExitCode.OK


def test_an_async_handler_gets_the_async_strategy_and_serves_many_clients(sockserve: Any) -> None:
    server = sockserve("run", "tests.runner.targets.mod:AsyncHandler", *BIND, "--workers", "2")
    port = server.port()
    assert len(server.started()) == 2
    conns = [Conn(port) for _ in range(60)]  # far more than threads a worker would have
    try:
        for number, conn in enumerate(conns):
            assert conn.ask(f"echo {number}") == str(number)
        # Coroutines, not a thread per connection: each worker has a handful of threads.
        assert all(int(conn.ask("threads")) < 10 for conn in conns)
    finally:
        for conn in conns:
            conn.close()
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == ExitCode.OK
    assert_clean(server.output)


@pytest.mark.parametrize(
    ("target", "worker_class", "complaint"),
    [
        ("tests.runner.targets.mod:Handler", "async", "is a synchronous handler"),
        ("tests.runner.targets.mod:AsyncHandler", "threads", "is an async handler"),
    ],
)
def test_a_handler_the_worker_class_cannot_run_is_a_setting_error(
    sockserve: Any, target: str, worker_class: str, complaint: str
) -> None:
    server = sockserve("run", target, *BIND, "--workers", "0", "--worker-class", worker_class)
    assert server.wait_exit() == ExitCode.USAGE
    [error] = server.lines(ERROR_LINE)
    assert complaint in error[0]
    assert f"worker_class = {worker_class!r} (from --worker-class)" in error[0]
    assert_clean(server.output)


def test_an_async_handler_on_a_datagram_listener_exits_7(sockserve: Any) -> None:
    server = sockserve(
        "run", "tests.runner.targets.mod:AsyncHandler", "--bind", "udp://127.0.0.1:0"
    )
    assert server.wait_exit() == ExitCode.BAD_TARGET
    [error] = server.lines(ERROR_LINE)
    assert "serves stream sockets" in error[0]
    assert_clean(server.output)


# -- failures: one line, a named exit status, no respawn loop --------------------------------


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_module_that_raises_at_import_exits_5_at_once(sockserve: Any, workers: str) -> None:
    began = time.monotonic()
    server = sockserve("run", "tests.runner.targets.broken:Handler", *BIND, "--workers", workers)
    assert server.wait_exit() == ExitCode.IMPORT
    assert time.monotonic() - began < 5.0  # no back-off, no respawn loop
    [error] = server.lines(ERROR_LINE)
    assert re.fullmatch(
        r"sockserve: error: importing 'tests\.runner\.targets\.broken' failed: "
        r"RuntimeError: this module fails to import on purpose \(.*broken\.py:3\)",
        error[0],
    )
    assert "Traceback" not in server.output
    if workers == "2":
        # The first worker proves the target loads before the others start.
        assert len(server.lines(STARTED)) == 1
        assert server.lines(r"ERROR sockserve\.master: worker 1 failed to boot \(exit status 5\)")
    assert not server.lines(r"listening on")


BAD_TARGETS = [
    ("missing-module", "tests.runner.targets.nosuchmodule:Handler", ExitCode.IMPORT,
     "no module named"),
    ("missing-name", "tests.runner.targets.mod:Missing", ExitCode.NOT_FOUND,
     "has no attribute 'Missing'"),
    ("constant", "tests.runner.targets.mod:NOT_A_TARGET", ExitCode.BAD_TARGET, "is an int, not a"),
    ("plain-class", "tests.runner.targets.mod:NotAHandler", ExitCode.BAD_TARGET,
     "is a type, not a"),
    ("bad-factory", "tests.runner.targets.mod:bad_factory", ExitCode.BAD_TARGET, "returned str"),
    ("no-colon", "tests.runner.targets.mod", ExitCode.USAGE, "must look like package.module:Name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "target", "code", "message"),
    [
        pytest.param(mode, target, code, message, id=f"{mode}-{name}")
        for mode in ("run", "check-config")
        for name, target, code, message in BAD_TARGETS
        # A factory is only called when serving: --check-config imports, it does not bind.
        if not (mode == "check-config" and name == "bad-factory")
    ],
)
def test_bad_targets_have_their_exit_status(
    sockserve: Any, mode: str, target: str, code: ExitCode, message: str
) -> None:
    extra = ["--check-config"] if mode == "check-config" else ["--workers", "2"]
    server = sockserve("run", target, *BIND, *extra)
    assert server.wait_exit() == code
    [error] = server.lines(ERROR_LINE)
    assert message in error[0]
    assert "Traceback" not in server.output
    assert server.stdout == ""  # --check-config prints settings only for a good target


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "-1"], {}, "workers = -1 (from --workers): must be an integer >= 0"),
        (["--worker-class", "green"], {}, "must be one of 'sync', 'threads', 'pool', 'fork'"),
        (["--grace", "soon"], {}, "grace = 'soon' (from --grace): must be a finite number"),
        (["--no-such-option"], {}, "unrecognized arguments: --no-such-option"),
        (["--bind", "127.0.0.1:99999"], {}, "port 99999 is out of range"),
        ([], {"SOCKSERVE_THREADS": "many"}, "environment SOCKSERVE_THREADS"),
        ([], {"SOCKSERVE_CONFIG": "/nonexistent/sockserve.toml"}, "cannot read config file"),
        (["--reuse-port", "--workers", "0"], {}, "reuse_port (from --reuse-port) needs worker"),
    ],
    ids=["negative", "choice", "number", "unknown-flag", "bind", "env", "config-file", "combo"],
)
def test_bad_settings_exit_2(
    sockserve: Any, args: list[str], env: dict[str, str], message: str
) -> None:
    server = sockserve("run", HANDLER, *args, env=child_env(**env))
    assert server.wait_exit() == ExitCode.USAGE
    assert message in server.output
    assert "Traceback" not in server.output
    assert not server.lines(STARTED)  # nothing was started


# -- --check-config ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (
            ["echo", "--idle-timeout", "1e9"],
            None,
            "idle_timeout = 1000000000.0 (from --idle-timeout): must be a finite number",
        ),
        (
            ["echo"],
            "access_log = 0\n",
            "access_log = 0 (from config file {path!r}, key 'access_log'): must be true or false",
        ),
        (
            ["run", "tests.runner.targets.mod:Handler", "--worker-class", "async"],
            None,
            "worker_class = 'async' (from --worker-class): Handler is a synchronous handler",
        ),
        (
            ["run", "tests.runner.targets.mod:AsyncHandler", "--worker-class", "pool"],
            None,
            "worker_class = 'pool' (from --worker-class): AsyncHandler is an async handler",
        ),
    ],
    ids=["range", "toml-type", "sync-handler-async-class", "async-handler-pool-class"],
)
def test_check_config_rejects_what_a_run_would_reject(
    sockserve: Any, tmp_path: Path, args: list[str], config: str | None, message: str
) -> None:
    extra = []
    path = tmp_path / "bad.toml"
    if config is not None:
        path.write_text(config)
        extra = ["--config", str(path)]
    server = sockserve(*args, *extra, "--check-config")
    assert server.wait_exit() == ExitCode.USAGE
    assert message.format(path=str(path)) in server.output
    assert "Traceback" not in server.output
    assert server.stdout == ""


def test_check_config_without_uvloop_rejects_event_loop_uvloop() -> None:
    # find_spec() answers None for a module set to None in sys.modules: uvloop "is missing".
    code = (
        "import sys; sys.modules['uvloop'] = None; from sockserve.cli import main; "
        "sys.exit(main(['echo', '--event-loop', 'uvloop', '--check-config']))"
    )
    result = run([sys.executable, "-c", code], timeout=60)
    assert result.returncode == ExitCode.USAGE
    assert "event_loop = 'uvloop' (from --event-loop): uvloop is not installed" in result.stderr


def test_check_config_reports_the_async_family_defaults_for_an_async_run(sockserve: Any) -> None:
    server = sockserve("echo", "--worker-class", "async", "--check-config")
    assert server.wait_exit() == ExitCode.OK
    settings = settings_of(server.stdout)
    assert settings["max_connections"] == "10000"  # the async servers' own default
    assert settings["worker_class"] == "'async'"
    server = sockserve("echo", "--check-config")
    assert server.wait_exit() == ExitCode.OK
    assert settings_of(server.stdout)["max_connections"] == "4096"


def settings_of(stdout: str) -> dict[str, str]:
    pairs = (line.partition(" = ") for line in stdout.splitlines())
    return {name: value for name, _eq, value in pairs}


def test_check_config_prints_the_effective_settings_by_precedence(
    sockserve: Any, tmp_path: Path
) -> None:
    """flags > SOCKSERVE_* > TOML file > defaults, one setting decided at each level."""
    config = tmp_path / "sockserve.toml"
    config.write_text(
        "[sockserve]\n"
        "workers = 3\n"  # only in the file
        "grace = 5.0\n"  # file < environment
        "threads = 7\n"  # file < environment < flag
        'bind = "127.0.0.1:7001"\n'
    )
    env = child_env(SOCKSERVE_CONFIG=str(config), SOCKSERVE_GRACE="6", SOCKSERVE_THREADS="8")
    server = sockserve(
        "run", HANDLER, "--threads", "9", "--no-access-log", "--check-config", env=env
    )
    assert server.wait_exit() == ExitCode.OK
    assert server.output == ""
    settings = settings_of(server.stdout)
    assert settings["target"] == repr(HANDLER)
    assert settings["workers"] == "3"  # file
    assert settings["grace"] == "6.0"  # environment beats the file
    assert settings["threads"] == "9"  # the flag beats both
    assert settings["bind"] == "['127.0.0.1:7001']"
    assert settings["access_log"] == "False"
    assert settings["idle_timeout"] == "300.0"  # the default
    assert settings["config_file"] == repr(str(config))
    # Every field of the configuration is printed, one per line.
    from sockserve.runner.settings import RUNNER_SETTINGS

    assert {s.key for s in RUNNER_SETTINGS} | {"target", "config_file"} == set(settings)


def test_check_config_with_a_config_flag_and_run_defaults(sockserve: Any, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'target = "{HANDLER}"\nmax-requests = 100\n')
    server = sockserve("echo", "--config", str(config), "--check-config")
    assert server.wait_exit() == ExitCode.OK
    settings = settings_of(server.stdout)
    assert settings["target"] == "'echo'"  # the command names the target, not the file
    assert settings["max_requests"] == "100"  # dashes or underscores in TOML keys
    assert settings["workers"] == "0"  # the service commands serve in-process by default
    assert settings["grace"] == "2.0"


def test_a_server_that_answers_right_after_check_config(sockserve: Any) -> None:
    """--check-config does not bind: the same command line then serves."""
    check = sockserve("run", HANDLER, *BIND, "--workers", "1", "--check-config")
    assert check.wait_exit() == ExitCode.OK
    server = sockserve("run", HANDLER, *BIND, "--workers", "1")
    assert ask(server.port(), "echo ok") == "ok"
