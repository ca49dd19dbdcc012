"""One server under attack, in its own process: ``python -m benchmarks.hostile.servers``.

The same protocol as :mod:`benchmarks.servers` (bind 127.0.0.1 port 0, print
one JSON line ``{"port": N, "pid": P, ...}`` once serving), with two
additions the hostile harness needs:

* ``measure_pid``: the process whose tree the harness samples (the runner's
  master for ``sockserve-run-2``, not this wrapper);
* each line on stdin is answered with a JSON line ``{"stats": {...}}`` (the
  server's ``stats()``, or null where there is none); when stdin closes, one
  last such line, then the process exits at once. The stats are taken by a
  thread while the server runs, so the harness can ask during an attack, and
  no signal handler has to take the server's locks.

``--nofile N`` lowers RLIMIT_NOFILE (soft) to N before anything is bound (the
runner's processes inherit it); otherwise it is raised to the hard limit.
The server logs to stderr at INFO, as a production deployment would; the
harness counts those lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from benchmarks.hostile.catalog import STRATEGIES
from benchmarks.hostile.handlers import line_echo_class
from benchmarks.servers import HOST, announce, raise_fd_limit, runner_available

RUNNER_TARGET = "benchmarks.hostile.sockserve_handlers:LineEcho"
RUNNER_WORKERS = 2
#: How long the runner gets to answer its first line.
RUNNER_START_TIMEOUT_S = 20.0
#: How long the runner gets to stop after SIGQUIT before it is killed.
RUNNER_STOP_TIMEOUT_S = 3.0


def _exit_now(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (the harness's fallback) ends the process at once: nothing to save."""
    os._exit(0)


def set_fd_limit(nofile: int | None) -> None:
    if nofile is None:
        raise_fd_limit()
        return
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))


def _answer_stdin(stats: Callable[[], Any], before_exit: Callable[[], None] | None = None) -> None:
    """In a thread: answer each "stats" line on stdin with a stats line; at EOF, one
    last stats line, then exit at once."""

    def say_stats() -> None:
        try:
            snapshot = stats()
        except Exception as exc:  # a report, not a crash: say what went wrong instead
            snapshot = {"error": repr(exc)}
        sys.stdout.write(json.dumps({"stats": snapshot}) + "\n")
        sys.stdout.flush()

    def watch() -> None:
        for _ in sys.stdin.buffer:
            say_stats()
        say_stats()
        if before_exit is not None:
            before_exit()
        os._exit(0)

    threading.Thread(target=watch, name="hostile-stdin", daemon=True).start()


def build(strategy: str) -> Any:
    """The bound, listening server ``strategy`` names (sockserve imported only for its own)."""
    if strategy == "stdlib-threading":
        handler = line_echo_class(socketserver.StreamRequestHandler)
        return socketserver.ThreadingTCPServer((HOST, 0), handler)
    import sockserve  # noqa: PLC0415 -- only in the processes that serve sockserve
    from benchmarks.hostile import sockserve_handlers  # noqa: PLC0415

    if strategy == "sockserve-pool":
        return sockserve.ThreadPoolTCPServer((HOST, 0), sockserve_handlers.LineEcho)
    if strategy == "sockserve-pool-idle2":
        return sockserve.ThreadPoolTCPServer((HOST, 0), sockserve_handlers.LineEcho, idle_timeout=2)
    if strategy == "sockserve-async":
        return sockserve.AsyncTCPServer((HOST, 0), sockserve_handlers.AsyncLineEcho)
    raise SystemExit(f"unknown strategy {strategy!r}")


def serve_in_process(strategy: str) -> None:
    """Serve on this process's main thread, as a user's script does."""
    server = build(strategy)

    def stats() -> Any:
        return server.stats().as_dict() if hasattr(server, "stats") else None

    port = server.server_address[1]
    extra: dict[str, Any] = {"strategy": strategy, "measure_pid": os.getpid()}
    if hasattr(server, "event_loop_kind"):
        extra["event_loop"] = server.event_loop_kind
    announce(port, getattr(server, "request_queue_size", None), **extra)
    _answer_stdin(stats)
    server.serve_forever()


def _wait_until_serving(port: int) -> None:
    """One line through the runner: the listener exists before any worker, an echo does not."""
    with socket.create_connection((HOST, port), timeout=RUNNER_START_TIMEOUT_S) as client:
        client.sendall(b"ready\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(64)
            if not chunk:
                raise SystemExit("sockserve run closed the readiness connection without answering")
            reply += chunk


def serve_runner() -> None:
    """``sockserve run`` with its defaults on a listener bound here (handed over as fd://N)."""
    reason = runner_available()
    if reason:
        print(f"unavailable: {reason}", file=sys.stderr)
        raise SystemExit(3)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(socket.SOMAXCONN)
    port = listener.getsockname()[1]
    command = [sys.executable, "-m", "sockserve", "run", RUNNER_TARGET]
    command += ["--bind", f"fd://{listener.fileno()}", "--workers", str(RUNNER_WORKERS)]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, pass_fds=(listener.fileno(),))
    listener.close()  # the runner has its own copy

    def stop_runner() -> None:
        child.send_signal(signal.SIGQUIT)  # the runner's "stop at once"
        try:
            child.wait(RUNNER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()

    _wait_until_serving(port)
    announce(
        port,
        socket.SOMAXCONN,
        strategy="sockserve-run-2",
        measure_pid=child.pid,
        workers=RUNNER_WORKERS,
    )
    # The workers' stats live in other processes: the runner reports none.
    _answer_stdin(lambda: None, before_exit=stop_runner)
    child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", required=True, choices=[s.name for s in STRATEGIES])
    parser.add_argument("--nofile", type=int, help="RLIMIT_NOFILE (soft) to run under")
    args = parser.parse_args(argv)
    set_fd_limit(args.nofile)
    signal.signal(signal.SIGTERM, _exit_now)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.strategy == "sockserve-run-2":
        serve_runner()
    else:
        serve_in_process(args.strategy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
