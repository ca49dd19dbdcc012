"""What gunicorn and uvicorn users expect of ``sockserve run``: the import path, ``--chdir``,
the pid file, short flags, privileges, ``--env-file``, ``--preload``, ``--reload``, ``--help``."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from helpers.clients import Conn
from helpers.net import TIMEOUT
from helpers.processes import child_env, listening_inodes, proc_status, run, sockserve_argv
from sockserve import cli
from sockserve.exitcodes import ExitCode
from sockserve.runner.listeners import close_listeners
from sockserve.runner.master import Master
from sockserve.runner.settings import ConfigError, RunConfig, read_env_file

from .support import HANDLER, ask, pids_serving

APP = """
import sockserve

class Handler(sockserve.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())
"""


def make_project(root: Path) -> Path:
    """``root/myapp/server.py`` with a handler, as a user's project would have it."""
    package = root / "myapp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "server.py").write_text(APP)
    return root


def script(tmp_path: Path) -> list[str]:
    """A stand-in for the installed ``sockserve`` script: its own folder is ``sys.path[0]``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = bin_dir / "sockserve-script.py"
    path.write_text("import sys\nfrom sockserve.cli import main\nsys.exit(main())\n")
    return [sys.executable, str(path)]


# -- the import path and --chdir ------------------------------------------------------


def test_the_script_imports_the_target_from_the_working_directory(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    result = run([*script(tmp_path), "run", "myapp.server:Handler", "--check-config"], cwd=project)
    assert result.returncode == ExitCode.OK, result.stderr
    assert "target = 'myapp.server:Handler'" in result.stdout


def test_chdir_loads_the_target_from_that_directory(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = [*script(tmp_path), "run", "myapp.server:Handler", "--check-config"]
    result = run(argv, cwd=elsewhere)
    assert result.returncode == ExitCode.IMPORT  # not found from elsewhere...
    result = run([*argv, "--chdir", str(project)], cwd=elsewhere)
    assert result.returncode == ExitCode.OK, result.stderr  # ...but with --chdir


def test_chdir_to_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run(
        [*script(tmp_path), "run", "echo", "--chdir", str(tmp_path / "nope"), "--check-config"],
        env=child_env(),
    )
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == (
        f"sockserve: error: chdir = {str(tmp_path / 'nope')!r} (from --chdir): "
        "No such file or directory\n"
    )


# -- the pid file ---------------------------------------------------------------------


def test_a_pid_file_in_a_missing_directory_is_one_line_and_exit_usage(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "sockserve.pid"
    result = run(sockserve_argv("echo", "--bind", "127.0.0.1:0", "--pid-file", str(path)))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == (
        f"sockserve: error: cannot write pid file {str(path)!r}: No such file or directory\n"
    )


def test_a_pid_file_held_by_a_running_server_is_refused(sockserve: Any, tmp_path: Path) -> None:
    path = tmp_path / "sockserve.pid"
    first = sockserve("echo", "--bind", "127.0.0.1:0", "--pid-file", str(path))
    first.listening()
    assert path.read_text() == f"{first.pid}\n"
    result = run(sockserve_argv("echo", "--bind", "127.0.0.1:0", "--pid-file", str(path)))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == (
        f"sockserve: error: pid file {str(path)!r} is held by a running process "
        f"(pid {first.pid}): is sockserve already running?\n"
    )
    assert path.read_text() == f"{first.pid}\n"  # untouched
    assert first.stop() == ExitCode.OK
    assert not path.exists()


def test_a_stale_pid_file_is_taken_over(sockserve: Any, tmp_path: Path) -> None:
    """A file nobody holds locked is left by a server that died: its pid means nothing now."""
    path = tmp_path / "sockserve.pid"
    path.write_text(f"{os.getpid()}\n")  # a live pid, but no lock: not a running server
    server = sockserve("echo", "--bind", "127.0.0.1:0", "--pid-file", str(path))
    server.listening()
    assert path.read_text() == f"{server.pid}\n"
    assert server.stop() == ExitCode.OK


# -- a handler for the wrong kind of socket ---------------------------------------------


@pytest.mark.parametrize(
    ("target", "bind", "complaint"),
    [
        (HANDLER, "udp://127.0.0.1:0", "Handler is a stream handler: it serves stream sockets"),
        (
            "tests.runner.targets.mod:DatagramHandler",
            "127.0.0.1:0",
            "DatagramHandler is a datagram handler: it serves udp:// listeners",
        ),
    ],
    ids=["stream-on-udp", "datagram-on-tcp"],
)
@pytest.mark.parametrize("how", [("--workers", "0"), ("--workers", "1"), ("--check-config",)])
def test_a_handler_for_the_other_kind_of_socket_exits_7(
    target: str, bind: str, complaint: str, how: tuple[str, ...]
) -> None:
    result = run(sockserve_argv("run", target, "--bind", bind, *how))
    assert result.returncode == ExitCode.BAD_TARGET, result.stderr
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_the_right_handler_on_each_kind_of_socket_serves(sockserve: Any) -> None:
    server = sockserve("run", "tests.runner.targets.mod:DatagramHandler", "--workers", "0",
                       "--bind", "udp://127.0.0.1:0")  # fmt: skip
    [spec] = server.listening()
    host, _, port = spec.removeprefix("udp://").rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(b"echo hi\n", (host, int(port)))
        assert client.recv(100) == b"hi\n"


# -- cosmetics ----------------------------------------------------------------------------


def test_sigquit_is_not_logged_as_a_graceful_stop(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "--bind", "127.0.0.1:0", "--workers", "1")
    server.listening()
    assert server.stop(signal.SIGQUIT) == ExitCode.OK
    assert "SIGQUIT: aborting 1 worker(s)" in server.output
    assert "received SIGTERM" not in server.output
    assert "draining" not in server.output


def test_an_idle_timeout_says_timed_out_once(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "--bind", "127.0.0.1:0", "--workers", "0",
                       "--idle-timeout", "0.2", "--dispatch", "immediate")  # fmt: skip
    with Conn(server.port()) as conn:
        assert conn.at_eof()
    [line] = server.wait_for(r"^\[\d+\] INFO sockserve\.server: client \S+ timed out.*$")
    assert line[0].endswith(" timed out: the connection was idle too long")


# -- --reuse-port ------------------------------------------------------------------------


@pytest.mark.parametrize(("workers", "budget", "connects"), [("1", "2", 30), ("2", "3", 40)])
def test_reuse_port_recycling_refuses_no_connection(
    sockserve: Any, workers: str, budget: str, connects: int
) -> None:
    """A recycled worker's socket stays open in the master: its queue waits for the
    replacement (with one worker nothing else listens meanwhile)."""
    server = sockserve("run", HANDLER, "--bind", "127.0.0.1:0", "--workers", workers,
                       "--max-requests", budget, "--reuse-port", "--no-access-log")  # fmt: skip
    port = server.port()
    served = [ask(port) for _ in range(connects)]  # a refused connection raises here
    assert len(set(served)) >= connects // (int(workers) * int(budget)) // 2
    assert "recycling this worker" in server.output


def test_reuse_port_spreads_no_datagram_to_the_master(sockserve: Any) -> None:
    """Datagram listeners are shared, not spread: every datagram gets its answer."""
    server = sockserve("echo", "--bind", "udp://127.0.0.1:0", "--workers", "2", "--reuse-port")
    [spec] = server.listening()
    host, _, port = spec.removeprefix("udp://").rpartition(":")
    for number in range(20):  # a new source port each time: new hashes
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            client.sendto(b"%d" % number, (host, int(port)))
            assert client.recv(100) == b"%d" % number


def test_reuse_port_refuses_a_port_another_process_listens_on(sockserve: Any) -> None:
    first = sockserve("run", HANDLER, "--bind", "127.0.0.1:0", "--workers", "1", "--reuse-port")
    port = first.port()
    argv = ["run", HANDLER, "--bind", f"127.0.0.1:{port}", "--workers", "1", "--reuse-port"]
    result = run(sockserve_argv(*argv))
    assert result.returncode == ExitCode.BIND
    assert result.stderr == (
        f"sockserve: error: cannot bind tcp://127.0.0.1:{port}: another process already "
        "listens on this port; --reuse-port would share its connections with it "
        "(--reuse-port-overlap to do that on purpose)\n"
    )
    # On purpose: both serve (a blue/green restart of a whole instance).
    second = sockserve(*argv, "--reuse-port-overlap")
    assert second.port() == port
    [(_i, second_worker)] = second.started()
    [(_i, first_worker)] = first.started()
    assert pids_serving(port, want=2) == {str(first_worker), str(second_worker)}


def test_reuse_port_overlap_needs_reuse_port() -> None:
    result = run(sockserve_argv("run", HANDLER, "--workers", "1", "--reuse-port-overlap",
                                "--check-config"))  # fmt: skip
    assert result.returncode == ExitCode.USAGE
    assert "reuse_port_overlap (from --reuse-port-overlap) needs --reuse-port" in result.stderr


# -- the command line ----------------------------------------------------------------------


def parse(*args: str) -> RunConfig:
    return cli.config_from_args(cli.build_parser().parse_args(args), environ={})


def test_gunicorns_short_flags(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("grace = 3\n")
    short = parse("run", "x:y", "-b", ":7000", "-b", "udp://:7001", "-w", "3", "-k", "threads",
                  "-t", "12", "-c", str(config))  # fmt: skip
    assert (short.bind, short.workers, short.worker_class) == (
        [":7000", "udp://:7001"],
        3,
        "threads",
    )
    assert (short.worker_timeout, short.grace) == (12.0, 3.0)


def run_help() -> str:
    result = run(sockserve_argv("run", "--help"))
    assert result.returncode == 0
    return result.stdout


def test_run_help_groups_the_options_with_real_metavars_and_defaults() -> None:
    text = run_help()
    for heading in ("where to listen:", "processes:", "TLS:", "logging:", "configuration:"):
        assert f"\n{heading}\n" in text
    for shown in ("-b HOST:PORT, --bind HOST:PORT", "-w N, --workers N", "--grace SECONDS",
                  "--pid-file PATH", "-c PATH, --config PATH"):  # fmt: skip
        assert shown in text
    flat = " ".join(text.split())
    assert "listens on (default: off)" in flat  # --reuse-port: switches show theirs
    assert "(default: on)" in flat  # --access-log, --tcp-nodelay
    assert "(default: None)" not in flat  # None is "off"
    assert "--pid-file PATH write the master's pid" in flat


def test_run_help_says_signals_exit_statuses_and_examples() -> None:
    text = run_help()
    assert "signals (to the master):" in text
    for name in ("TERM, INT", "QUIT", "HUP", "TTIN, TTOU"):
        assert f"\n  {name} " in text
    for code in ExitCode:
        assert re.search(rf"^  {int(code)}  {code.name} ", text, re.MULTILINE), code
    assert text.count("\n  sockserve run myapp.server:Handler ") == 2


def test_an_unknown_flag_gets_the_run_usage() -> None:
    result = run(sockserve_argv("run", "echo", "--wokers", "2"))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.startswith("usage: sockserve run TARGET [OPTIONS]")
    assert result.stderr.endswith("sockserve run: error: unrecognized arguments: --wokers 2\n")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--workers", "two"), "workers = 'two' (from --workers): must be an integer >= 0"),
        (("-t", "soon"), "worker_timeout = 'soon' (from --worker-timeout): must be a finite"),
    ],
)
def test_a_bad_number_is_a_message(args: tuple[str, ...], line: str) -> None:
    result = run(sockserve_argv("run", "echo", *args, "--check-config"))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.startswith(f"sockserve: error: {line}")
    assert "invalid literal" not in result.stderr


def test_log_level_in_capitals() -> None:
    assert parse("run", "x:y", "--log-level", "INFO").log_level == "info"
    assert parse("run", "x:y", "--log-level", "Debug").log_level == "debug"


# -- --user, --group, --umask, --backlog -------------------------------------------------

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="changing the user needs root")
NOBODY = pwd.getpwnam("nobody")


def ids_of(pid: int) -> tuple[int, int]:
    """(effective uid, effective gid) of process ``pid``."""
    status = proc_status(pid)
    return int(status["Uid"][1]), int(status["Gid"][1])


@root_only
def test_user_runs_the_workers_as_nobody_the_master_stays(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "1", "--user", "nobody")
    worker = int(ask(server.port(), "pid"))
    assert ids_of(worker) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert ids_of(server.pid) == (0, 0)  # it binds, writes the pid file, reads keys on reload
    assert server.stop() == ExitCode.OK


@root_only
def test_user_with_a_key_only_root_may_read(sockserve: Any, tmp_path: Path) -> None:
    """Each worker reads the certificate and key before it drops to --user."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    keyfile.chmod(0o600)
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "1", "--user", "nobody",
                       "--group", "nogroup", "--certfile", str(certfile),
                       "--keyfile", str(keyfile))  # fmt: skip
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with (
        socket.create_connection(("127.0.0.1", server.port()), TIMEOUT) as raw,
        client_context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"pid\n")
        worker = int(tls.recv(100))
    assert ids_of(worker) == (NOBODY.pw_uid, grp.getgrnam("nogroup").gr_gid)


@root_only
def test_user_without_workers_drops_in_process(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "0", "--user", "nobody")
    assert ask(server.port(), "pid") == str(server.pid)
    assert ids_of(server.pid) == (NOBODY.pw_uid, NOBODY.pw_gid)


def test_an_unknown_user_is_a_usage_error() -> None:
    result = run(sockserve_argv("run", HANDLER, "--user", "no-such-user-here", "--check-config"))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == (
        "sockserve: error: user (from --user): no such user 'no-such-user-here'\n"
    )


def test_umask_applies_to_the_socket_file(sockserve: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = sockserve("echo", "-b", f"unix:{path}", "--umask", "077")
    server.listening()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) shows the backlog")
def test_backlog_sets_the_listen_queue(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "1", "--backlog", "7")
    port = server.port()
    # /proc/net/tcp has no backlog; ss -l shows it as Send-Q.
    out = run(["ss", "-ltnH", f"sport = :{port}"]).stdout
    assert out.split()[2] == "7", out


@pytest.mark.parametrize(("text", "mask"), [("027", 0o27), ("0o022", 0o22), ("none", None)])
def test_umask_is_octal(text: str, mask: int | None) -> None:
    assert parse("run", "x:y", "--umask", text).umask == mask


def test_a_bad_umask_is_a_message() -> None:
    with pytest.raises(ConfigError, match=r"umask = '99' \(from --umask\): must be an octal"):
        parse("run", "x:y", "--umask", "99")


# -- --env-file ----------------------------------------------------------------------------


ENV_FILE = """\
# the application's settings
export GREETING="hello there"
PLAIN=value with spaces
QUOTED='single'
SOCKSERVE_WORKERS=3
SOCKSERVE_GRACE=4
"""


def test_env_file_variables_reach_the_target_and_settings(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text(ENV_FILE)
    assert read_env_file(str(env_file)) == {
        "GREETING": "hello there",
        "PLAIN": "value with spaces",
        "QUOTED": "single",
        "SOCKSERVE_WORKERS": "3",
        "SOCKSERVE_GRACE": "4",
    }
    args = cli.build_parser().parse_args(["run", "x:y", "--env-file", str(env_file)])
    config = cli.config_from_args(args, environ={"SOCKSERVE_GRACE": "9"})
    assert config.workers == 3  # from the file
    assert config.grace == 9.0  # the real environment wins


def test_env_file_is_in_the_workers_environment(sockserve: Any, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("SOCKSERVE_TEST_ID=from-the-file\n")
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "1", "--env-file",
                       str(env_file))  # fmt: skip
    assert ask(server.port(), "id") == "from-the-file"


def test_a_bad_env_file_line_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("GOOD=1\nthis is not a variable\n")
    with pytest.raises(ConfigError, match=r"bad\.env', line 2: not KEY=VALUE"):
        read_env_file(str(env_file))


# -- stopping from a terminal ----------------------------------------------------------------


def test_ctrl_c_says_what_it_waits_for_and_a_second_forces(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "0", "--grace", "30")
    with Conn(server.port()) as in_flight:
        assert in_flight.ask("echo hold") == "hold"
        server.signal(signal.SIGINT)
        server.wait_for(
            r"^\[\d+\] INFO sockserve\.worker: waiting up to 30 s \(--grace\) "
            r"for 1 connection\(s\) in flight; Ctrl-C again to stop at once$"
        )
        assert server.stop(signal.SIGINT, timeout=10) == ExitCode.OK  # not after 30 s
        assert in_flight.at_eof()


def test_ctrl_c_to_the_master_says_the_grace_and_how_to_force(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "1", "--grace", "7")
    server.listening()
    server.signal(signal.SIGINT)
    server.wait_for(
        r"INFO sockserve\.master: stopping: SIGINT: draining 1 worker\(s\), which finish the "
        r"connections in flight within 7 s \(--grace\); Ctrl-C \(or another SIGTERM\) again "
        r"stops them at once$"
    )
    assert server.wait_exit() == ExitCode.OK


def test_an_unknown_sockserve_variable_is_warned_about() -> None:
    env = child_env(SOCKSERVE_WOKRERS="4", SOCKSERVE_NOTHING_LIKE_IT="1", SOCKSERVE_TEST_ID="x")
    result = run(sockserve_argv("run", "echo", "-w", "0", "--check-config"), env=env)
    assert result.returncode == ExitCode.OK
    # Each line after the log's timestamp and pid ("2026-12-02T02:40:47.402+00:00 [11095] ").
    assert [line.split("] ", 1)[1] for line in result.stderr.splitlines()] == [
        "WARNING sockserve.cli: ignoring SOCKSERVE_NOTHING_LIKE_IT: no such setting",
        "WARNING sockserve.cli: ignoring SOCKSERVE_WOKRERS (did you mean SOCKSERVE_WORKERS?): "
        "no such setting",
    ]


# -- --preload and --reload ------------------------------------------------------------------

WHERE_LOADED = """
import os
import sockserve

LOADED_IN = os.getpid()

class Handler(sockserve.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(b"%d %d\\n" % (LOADED_IN, os.getpid()))
"""


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
def test_preload_imports_the_target_in_the_master(
    sockserve: Any, tmp_path: Path, preload: bool
) -> None:
    (tmp_path / "where.py").write_text(WHERE_LOADED)
    flags = ["--preload"] if preload else []
    server = sockserve("run", "where:Handler", "-b", "127.0.0.1:0", "-w", "1", *flags,
                       env=child_env(tmp_path))  # fmt: skip
    loaded_in, worker = map(int, ask(server.port(), "?").split())
    assert worker != server.pid
    assert loaded_in == (server.pid if preload else worker)


def test_preload_catches_an_import_error_before_any_worker(sockserve: Any) -> None:
    server = sockserve("run", "tests.runner.targets.broken:Handler", "-b", "127.0.0.1:0",
                       "-w", "2", "--preload")  # fmt: skip
    assert server.wait_exit() == ExitCode.IMPORT
    assert "worker 1 started" not in server.output
    assert server.output.startswith("sockserve: error: importing 'tests.runner.targets.broken'")


def test_reload_with_preload_or_without_workers_is_refused() -> None:
    for extra, complaint in [
        (("-w", "0"), "reload (from --reload) needs worker processes"),
        (("-w", "1", "--preload"), "reload (from --reload) and preload (from --preload)"),
    ]:
        result = run(sockserve_argv("run", "echo", "--reload", *extra, "--check-config"))
        assert result.returncode == ExitCode.USAGE
        assert complaint in result.stderr


def _touch_write(path: Path, text: str) -> None:
    """Write ``text`` and move the mtime on, so that a change within the same tick shows."""
    before = path.stat().st_mtime
    path.write_text(text)
    os.utime(path, (before + 5, before + 5))


@pytest.mark.slow
def test_reload_restarts_the_worker_on_a_change_and_survives_a_broken_edit(
    sockserve: Any, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project")
    source = project / "myapp" / "server.py"
    server = sockserve("run", "myapp.server:Handler", "-b", "127.0.0.1:0", "-w", "1",
                       "--reload", cwd=project)  # fmt: skip
    port = server.port()
    assert ask(port, "abc") == "ABC"
    mark = server.mark()
    _touch_write(source, "this is not Python\n")
    server.wait_for(r"server\.py changed: restarting this worker \(--reload\)$", start=mark)
    server.wait_for(r"worker 1 failed to boot \(exit status 5\): --reload tries again", start=mark)
    _touch_write(source, APP.replace("upper()", "lower()"))
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # the queued connection waits for the fixed worker
        if ask(port, "ABC") == "abc":
            break
    else:
        raise AssertionError(server.describe())
    assert server.stop() == ExitCode.OK


def test_reuse_port_fewer_workers_leaves_no_socket_nobody_accepts(sockserve: Any) -> None:
    server = sockserve("run", HANDLER, "-b", "127.0.0.1:0", "-w", "2", "--reuse-port",
                       "--no-access-log")  # fmt: skip
    port = server.port()
    assert len(listening_inodes(port)) == 2
    started = dict(server.started())
    server.signal(signal.SIGTTOU)
    server.wait_for(rf"worker 2 \(pid {started[2]}\) stopped")  # the highest index goes
    assert len(listening_inodes(port)) == 1  # its socket closed with it
    for _ in range(20):  # every connection reaches the remaining worker, none hangs
        assert ask(port) == str(started[1])


def test_a_reload_keeps_the_reuse_port_setting_of_the_start(tmp_path: Path) -> None:
    """The listeners stay those of the start: so does the way workers get theirs."""
    config = parse("run", "x:y", "-b", "127.0.0.1:0", "-w", "1", "--reuse-port")
    listeners = cli.resolve_listeners(config)
    master = Master(config, listeners)
    try:
        master.config = parse("run", "x:y", "-b", "127.0.0.1:0", "-w", "1")  # a reload
        [own] = master._listeners_of(1)
        assert own.sock is not listeners[0].sock
        assert own.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        master._close_slot(1)
    finally:
        master._inbox.close()
        close_listeners(listeners)
