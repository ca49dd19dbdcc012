"""Logs an operator can read: timestamps, the start-up line, JSON lines, log files and
their rotation (SIGUSR1), and process titles.

Every run is ``python -m sockserve run ...`` in a child process; lines on its
stderr are waited for as they come, and log files are read once the run has
exited (all it will write has been written then).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import Conn
from helpers.processes import REPO, TIMESTAMP, child_env, run
from helpers.programs import require_program
from sockserve import __version__
from sockserve.exitcodes import ExitCode

from .support import HANDLER, render_deploy_config

BIND = ("--bind", "127.0.0.1:0")
REOPENED = r"^\[(\d+)\] INFO sockserve\.(master|worker|cli): SIGUSR1: log files reopened$"


def serve_one(port: int) -> int:
    """One connection: ask which worker serves it, close, wait until the server closed too.

    The server writes the access line before it closes, so once this returns
    the connection's line is in the log.
    """
    with Conn(port) as conn:
        pid = int(conn.ask("pid"))
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.at_eof()
    return pid


def serve_until_every_worker_served(port: int, workers: set[int]) -> list[int]:
    """Connections until each of ``workers`` served one (bounded); the pid of each."""
    served: list[int] = []
    for _ in range(400):
        served.append(serve_one(port))
        if set(served) >= workers:
            return served
    raise AssertionError(f"only {set(served)} of {workers} served")


def worker_pids(server: Any, count: int) -> set[int]:
    server.listening()
    pids = {pid for _index, pid in server.started()}
    assert len(pids) == count
    return pids


@contextlib.contextmanager
def inherited_listener() -> Iterator[tuple[int, int]]:
    """A listening socket for ``--bind fd://N``: (N, port), for runs whose stderr is silent."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        os.set_inheritable(sock.fileno(), True)
        yield sock.fileno(), sock.getsockname()[1]


# -- the text line and its timestamp --------------------------------------------------------


def test_every_line_starts_with_an_iso_8601_timestamp_and_the_pid(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1")
    port = server.port()
    [(_index, worker)] = server.started()
    serve_one(port)
    assert server.stop() == ExitCode.OK
    lines = server.output.splitlines()
    assert len(lines) >= 6
    for line in lines:
        match = re.match(rf"({TIMESTAMP[1:-1]}) \[(\d+)\] (INFO|WARNING) sockserve\.\w+: ", line)
        assert match, line
        stamp = datetime.fromisoformat(match[1])
        assert stamp.utcoffset() is not None  # the offset is written, so the zone is known
        assert int(match[2]) in (server.pid, worker)
    times = [datetime.fromisoformat(line.split(" ", 1)[0]) for line in lines]
    # One process's lines are in time order (the master's and a worker's may cross).
    master_times = [t for t, line in zip(times, lines, strict=True) if f"[{server.pid}]" in line]
    assert master_times == sorted(master_times)
    [access] = server.lines(rf"^\[{worker}\] INFO sockserve\.access: 127\.0\.0\.1:\d+ ok ")
    assert access


def test_without_workers_lines_carry_the_pid_too(sockserve: Any) -> None:
    server = sockserve("echo", *BIND)
    server.port()
    assert server.lines(rf"^\[{server.pid}\] INFO sockserve\.cli: echo listening on tcp://")
    assert server.stop() == ExitCode.OK


# -- the start-up line ----------------------------------------------------------------------


STARTUP = (
    r"^\[(\d+)\] INFO sockserve\.(?:master|cli): sockserve (\S+) \(Python \S+\) serving (\S+): "
    r"worker class (\S+), (?:event loop (\S+)|no event loop), (.+); listeners: (.+)$"
)


def test_the_start_up_line_says_version_worker_class_workers_and_listeners(
    sockserve: Any, tmp_path: Path
) -> None:
    sock_path = tmp_path / "app.sock"
    server = sockserve(
        "run", HANDLER, *BIND, "--bind", f"unix:{sock_path}",
        "--workers", "2", "--proxy-protocol", "v2",
    )  # fmt: skip
    tcp, unix = server.listening(2)
    [line] = server.lines(STARTUP)
    pid, version, target, worker_class, loop, processes, listeners = line.groups()
    assert (int(pid), version, target) == (server.pid, __version__, HANDLER)
    assert (worker_class, loop, processes) == ("pool", None, "2 worker(s)")
    assert listeners == f"{tcp} (proxy v2), {unix} (proxy v2)"
    # It comes before the "listening on" lines scripts wait for.
    assert server.output.index("serving " + HANDLER) < server.output.index("listening on")
    assert server.stop() == ExitCode.OK


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_start_up_line_names_the_event_loop_really_used(sockserve: Any, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    target = "tests.runner.targets.mod:AsyncHandler"
    server = sockserve("run", target, *BIND, "--workers", "1", "--event-loop", loop)
    server.listening()
    [line] = server.lines(STARTUP)
    assert line.group(4, 5) == ("async", loop)
    assert server.stop() == ExitCode.OK


def test_without_workers_the_process_itself_logs_the_start_up_line(sockserve: Any) -> None:
    server = sockserve("echo", *BIND, "--worker-class", "threads")
    [spec] = server.listening()
    [line] = server.lines(STARTUP)
    assert int(line[1]) == server.pid
    assert line.group(3, 4, 5, 6, 7) == ("echo", "threads", None, "in process (no workers)", spec)
    assert server.stop() == ExitCode.OK


# -- JSON lines ---------------------------------------------------------------------------


def test_json_lines_parse_and_carry_the_access_fields(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--log-format", "json")
    [announced] = server.wait_for(r'^\{.*"message": "\S+ listening on ([^"\s]+)".*\}$')
    port = int(announced[1].rpartition(":")[2])
    with Conn(port) as conn:
        peer = conn.sock.getsockname()[1]
        worker = int(conn.ask("pid"))
        assert conn.ask("echo hello") == "hello"
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.at_eof()
    assert server.stop() == ExitCode.OK
    records = [json.loads(line) for line in server.output.splitlines()]
    for record in records:
        assert list(record)[:5] == ["time", "level", "logger", "pid", "message"]
        assert datetime.fromisoformat(record["time"]).utcoffset() is not None
    [access] = [r for r in records if r["logger"] == "sockserve.access"]
    assert access["pid"] == worker
    assert access["client"] == f"127.0.0.1:{peer}"
    assert access["outcome"] == "ok"
    assert access["rx"] == len("pid\necho hello\n")
    assert access["tx"] == len(f"{worker}\nhello\n")
    assert isinstance(access["duration"], float)
    assert 0 <= access["duration"] < 60
    assert access["message"].startswith(f"127.0.0.1:{peer} ok ")
    [startup] = [r for r in records if r["message"].startswith("sockserve ")]
    assert startup["pid"] == server.pid
    assert (startup["version"], startup["worker_class"], startup["workers"]) == (
        __version__,
        "pool",
        1,
    )
    assert startup["listeners"] == [f"tcp://127.0.0.1:{port}"]


# -- log files ----------------------------------------------------------------------------


def test_access_and_error_logs_go_to_their_own_files(sockserve: Any, tmp_path: Path) -> None:
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    access_log.write_text("kept from an earlier run\n")
    with inherited_listener() as (fd, port):
        server = sockserve(
            "run", HANDLER, "--bind", f"fd://{fd}", "--workers", "2",
            "--access-logfile", str(access_log), "--error-logfile", str(error_log),
            pass_fds=(fd,),
        )  # fmt: skip
        served = [serve_one(port) for _ in range(3)]
    assert server.stop() == ExitCode.OK
    assert server.output == ""  # nothing on stderr: it all went to the files
    first, *access = access_log.read_text().splitlines()
    assert first == "kept from an earlier run"  # appended to, never truncated
    assert len(access) == 3
    assert all(" INFO sockserve.access: 127.0.0.1:" in line for line in access)
    assert sorted(int(re.findall(r"\[(\d+)\]", line)[0]) for line in access) == sorted(served)
    errors = error_log.read_text()
    assert "sockserve.access" not in errors
    assert f"[{server.pid}] INFO sockserve.master: worker 1 started" in errors
    assert "SIGTERM" in errors


def test_an_access_logfile_of_dash_is_stdout(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--access-logfile", "-")
    port = server.port()
    serve_one(port)
    assert server.stop() == ExitCode.OK
    assert "sockserve.access" not in server.output
    [line] = server.stdout.splitlines()
    assert re.fullmatch(
        rf"{TIMESTAMP[1:]}\[\d+\] INFO sockserve\.access: 127\.0\.0\.1:\d+ ok .*", line
    )


def test_an_access_logfile_is_written_whatever_the_log_level(
    sockserve: Any, tmp_path: Path
) -> None:
    access_log = tmp_path / "access.log"
    with inherited_listener() as (fd, port):
        server = sockserve(
            "run", HANDLER, "--bind", f"fd://{fd}", "--workers", "1", "--log-level", "warning",
            "--access-logfile", str(access_log), pass_fds=(fd,),
        )  # fmt: skip
        serve_one(port)
    assert server.stop() == ExitCode.OK
    assert server.output == ""  # --log-level warning: no INFO line on stderr
    [line] = access_log.read_text().splitlines()
    assert " INFO sockserve.access: 127.0.0.1:" in line


def test_a_log_file_that_cannot_be_opened_is_a_usage_error(sockserve: Any, tmp_path: Path) -> None:
    missing = tmp_path / "no such folder" / "error.log"
    server = sockserve("run", HANDLER, *BIND, "--error-logfile", str(missing))
    assert server.wait_exit() == ExitCode.USAGE
    assert server.output.startswith(f"sockserve: error: error_logfile = {str(missing)!r}")
    assert "Traceback" not in server.output


def test_log_config_overrides_the_other_logging_settings(sockserve: Any, tmp_path: Path) -> None:
    log_file = tmp_path / "user.log"
    config = tmp_path / "logging.json"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"mine": {"format": "MINE %(name)s %(message)s"}},
                "handlers": {
                    "file": {"class": "logging.FileHandler", "filename": str(log_file),
                             "formatter": "mine"},
                },
                "loggers": {"sockserve": {"handlers": ["file"], "level": "INFO"}},
            }
        )
    )  # fmt: skip
    with inherited_listener() as (fd, port):
        server = sockserve(
            "run", HANDLER, "--bind", f"fd://{fd}", "--workers", "1",
            "--log-config", str(config), "--log-format", "json",
            pass_fds=(fd,),
        )  # fmt: skip
        serve_one(port)
    assert server.stop() == ExitCode.OK
    lines = log_file.read_text().splitlines()
    assert all(line.startswith("MINE sockserve.") for line in lines), lines
    assert "MINE sockserve.cli --log-config is in charge of logging: ignoring log_format" in lines
    assert any(line.startswith("MINE sockserve.access 127.0.0.1:") for line in lines)


# -- rotation: SIGUSR1 ----------------------------------------------------------------------


def test_sigusr1_after_a_rename_moves_the_access_log_of_every_worker_to_the_new_file(
    sockserve: Any, tmp_path: Path
) -> None:
    """logrotate's case: rename the file, send USR1 to the master, which forwards it."""
    access_log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    server = sockserve("run", HANDLER, *BIND, "--workers", "2", "--access-logfile", str(access_log))
    port = server.port()
    workers = worker_pids(server, 2)
    before = serve_until_every_worker_served(port, workers)
    access_log.rename(rotated)
    mark = server.mark()
    server.signal(signal.SIGUSR1)
    reopened = server.wait_for(REOPENED, count=3, start=mark)
    assert {int(m[1]) for m in reopened} == {server.pid, *workers}
    after = serve_until_every_worker_served(port, workers)
    assert server.stop() == ExitCode.OK

    def pids_in(path: Path) -> list[int]:
        lines = path.read_text().splitlines()
        assert all(" INFO sockserve.access: " in line for line in lines)
        return sorted(int(re.findall(r"\[(\d+)\]", line)[0]) for line in lines)

    assert pids_in(rotated) == sorted(before)
    assert pids_in(access_log) == sorted(after)  # both workers write to the new file


def test_sigusr1_after_a_rename_moves_the_error_log_of_master_and_workers(
    sockserve: Any, tmp_path: Path
) -> None:
    error_log = tmp_path / "error.log"
    rotated = tmp_path / "error.log.1"
    with inherited_listener() as (fd, port):
        server = sockserve(
            "run", HANDLER, "--bind", f"fd://{fd}", "--workers", "2",
            "--error-logfile", str(error_log), pass_fds=(fd,),
        )  # fmt: skip
        workers: set[int] = set()
        for _ in range(400):  # the log is in a file: both workers answering says both are up
            workers.add(serve_one(port))
            if len(workers) == 2:
                break
        assert len(workers) == 2
        error_log.rename(rotated)
        # USR1, then TERM: the master acts on them in that order, and forwards
        # them in that order, so every line of the stop is in the new file.
        server.signal(signal.SIGUSR1)
        assert server.stop() == ExitCode.OK
    old, new = rotated.read_text(), error_log.read_text()
    assert f"[{server.pid}] INFO sockserve.master: worker 1 started" in old
    assert "SIGUSR1" not in old
    assert "stopping" not in old
    for pid in (server.pid, *workers):
        assert f"[{pid}] INFO " in new
        assert re.search(rf"\[{pid}\] INFO sockserve\.\w+: SIGUSR1: log files reopened\n", new)
    assert f"[{server.pid}] INFO sockserve.master: stopping: SIGTERM" in new
    for pid in workers:
        assert f"[{pid}] INFO sockserve.worker: received SIGTERM: stopping" in new


def test_sigusr1_without_workers_reopens_and_keeps_serving(sockserve: Any, tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    server = sockserve("run", HANDLER, *BIND, "--workers", "0", "--access-logfile", str(access_log))
    port = server.port()
    serve_one(port)
    access_log.rename(tmp_path / "access.log.1")
    mark = server.mark()
    server.signal(signal.SIGUSR1)
    [reopened] = server.wait_for(REOPENED, start=mark)
    assert int(reopened[1]) == server.pid
    serve_one(port)
    assert server.stop() == ExitCode.OK
    assert len((tmp_path / "access.log.1").read_text().splitlines()) == 1
    assert len(access_log.read_text().splitlines()) == 1


# -- process titles -------------------------------------------------------------------------


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_process_titles_tell_master_and_workers_apart(sockserve: Any) -> None:
    pytest.importorskip("setproctitle")
    server = sockserve("run", HANDLER, *BIND, "--workers", "2")
    server.port()
    assert cmdline(server.pid) == f"sockserve: master [{HANDLER}]"
    titles = sorted(cmdline(pid) for _index, pid in server.started())
    assert titles == [f"sockserve: worker {n} [{HANDLER}]" for n in (1, 2)]
    assert server.stop() == ExitCode.OK


# -- logrotate itself, with the example configuration ------------------------------------------


def test_logrotate_with_the_deploy_example_rotates_a_running_server(
    sockserve: Any, tmp_path: Path
) -> None:
    """deploy/logrotate/sockserve, pointed at this run's files, run by the real logrotate."""
    logrotate = require_program("logrotate", "apt-get install logrotate")
    access_log, pid_file = tmp_path / "access.log", tmp_path / "sockserve.pid"
    config = tmp_path / "logrotate.conf"
    config.write_text(
        render_deploy_config(
            REPO / "deploy" / "logrotate" / "sockserve",
            {
                "/var/log/sockserve/access.log /var/log/sockserve/error.log": (
                    f"{access_log} {tmp_path / 'error.log'}"
                ),
                "create 0640 sockserve sockserve": "create 0640",
                "/run/sockserve/sockserve.pid": str(pid_file),
            },
        )
    )
    server = sockserve(
        "run", HANDLER, *BIND, "--workers", "2", "--access-logfile", str(access_log),
        "--pid-file", str(pid_file),
    )  # fmt: skip
    port = server.port()
    workers = worker_pids(server, 2)
    before = serve_until_every_worker_served(port, workers)
    mark = server.mark()
    done = run([logrotate, "--force", "--state", str(tmp_path / "state"), str(config)])
    assert done.returncode == 0, done.stderr
    reopened = server.wait_for(REOPENED, count=3, start=mark)
    assert {int(m[1]) for m in reopened} == {server.pid, *workers}
    after = serve_until_every_worker_served(port, workers)
    assert server.stop() == ExitCode.OK
    rotated = (tmp_path / "access.log.1").read_text().splitlines()
    assert len(rotated) == len(before)  # delaycompress: the newest rotated file stays plain
    assert len(access_log.read_text().splitlines()) == len(after)
    assert oct(access_log.stat().st_mode & 0o777) == oct(0o640)  # logrotate made the new one


def test_a_reload_keeps_the_logging_it_started_with_and_says_so(
    sockserve: Any, tmp_path: Path
) -> None:
    config = tmp_path / "sockserve.toml"
    config.write_text('log-format = "text"\n')
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", "--config", str(config))
    server.port()
    config.write_text('log-format = "json"\naccess-logfile = "-"\n')
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_for(
        r"^\[\d+\] WARNING sockserve\.master: reload: log_format, access_logfile change only "
        r"with a restart; keeping them$",
        start=mark,
    )
    server.wait_for(r"^\[\d+\] INFO sockserve\.master: reload complete", start=mark)
    assert not server.lines(r"^\{", start=mark)  # still text lines
    assert server.stop() == ExitCode.OK


def test_without_setproctitle_only_the_kernel_name_changes(sockserve: Any, tmp_path: Path) -> None:
    (tmp_path / "setproctitle.py").write_text("raise ImportError('not installed here')\n")
    server = sockserve("run", HANDLER, *BIND, "--workers", "1", env=child_env(tmp_path))
    server.port()
    [(_index, worker)] = server.started()
    assert " -m sockserve run " in cmdline(server.pid)  # the command line is left alone
    assert Path(f"/proc/{server.pid}/comm").read_text() == "sockserve-maste\n"
    assert Path(f"/proc/{worker}/comm").read_text() == "sockserve-worke\n"
    assert server.stop() == ExitCode.OK
    assert "Traceback" not in server.output
