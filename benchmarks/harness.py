"""Starting and stopping a server subprocess, and the environment it runs in.

Readiness is the port line the server prints once it listens (read with a
deadline, never guessed with a sleep). Each server gets its own session, so
stopping it signals its whole process group: forked children and prefork
workers go with their parent.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

REPO = Path(__file__).resolve().parent.parent
BUILD_DIR = Path(__file__).resolve().parent / ".build"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class ServerError(RuntimeError):
    """A server did not start (or died); the message carries its stderr tail."""


class ServerUnavailable(ServerError):
    """The server exited saying it cannot run here (exit status 3)."""


def child_env(sockserve_src: Path | None = None) -> dict[str, str]:
    """The environment for every subprocess: the repo (for ``benchmarks``) and
    ``src`` (for an uninstalled sockserve) on the path, unbuffered output.

    ``sockserve_src`` replaces this tree's ``src`` with another revision's
    export: the benchmark code stays this tree's, the library is that one.
    """
    env = dict(os.environ)
    paths = [str(REPO), str(sockserve_src or REPO / "src")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    # A warning filter turned into errors (as in the test suite) must not kill
    # a server over a DeprecationWarning in a peer framework.
    env.pop("PYTHONWARNINGS", None)
    return env


def check_origin(name: str, origin: str | None, sockserve_src: Path | None) -> None:
    """Raise ServerError unless a revision's server imported sockserve from that revision.

    What would otherwise go unnoticed: an import hook (an editable install,
    a ``.pth`` file) that shadows PYTHONPATH and makes both sides of a
    comparison the same code.
    """
    if sockserve_src is None:
        return
    if origin is None:
        raise ServerError(f"{name} did not say where it imported sockserve from")
    if not Path(origin).resolve().is_relative_to(sockserve_src.resolve()):
        raise ServerError(f"{name} imported sockserve from {origin}, not from {sockserve_src}")


def read_line(stream: IO[bytes], deadline: float) -> bytes | None:
    """One line from a pipe, or None if none arrived before ``deadline`` (monotonic).

    Reads byte by byte after select() so no data beyond the line is buffered
    away from later readers.
    """
    fd = stream.fileno()
    line = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 1)
        if not chunk:
            return bytes(line) if line else None
        line += chunk
        if chunk == b"\n":
            return bytes(line)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


class ServerProcess:
    """``with ServerProcess(kind, proto) as server:`` a listening server on ``server.port``.

    ``kind`` is the catalog name the server process serves; ``name`` (default:
    the kind) names it in logs and errors, ``sockserve_src`` the revision of
    sockserve it imports (default: this tree's), and ``env`` adds to its
    environment (the TLS certificate's paths).
    """

    def __init__(
        self,
        kind: str,
        proto: str,
        log_dir: Path,
        *,
        name: str | None = None,
        sockserve_src: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.name = name or kind
        self.proto = proto
        self.sockserve_src = sockserve_src
        self.env = env or {}
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}-{proto}.log"
        self.port = 0
        self.pid = 0
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Launch and wait for the port line; raises ServerError if it never comes."""
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "benchmarks.servers", "--kind", self.kind]
        command += ["--proto", self.proto]
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            env={**child_env(self.sockserve_src), **self.env},
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        line = read_line(self._proc.stdout, time.monotonic() + START_TIMEOUT_S)
        if not line:
            code = self._proc.poll()
            self.stop()
            detail = _tail(self.log_path)
            if code == 3:
                raise ServerUnavailable(detail.splitlines()[-1] if detail else "unavailable")
            raise ServerError(f"{self.name}/{self.proto} did not start (exit {code}): {detail}")
        self.info = json.loads(line)
        self.port = int(self.info["port"])
        self.pid = self._proc.pid
        try:
            check_origin(self.name, self.info.get("sockserve"), self.sockserve_src)
        except ServerError:
            self.stop()
            raise

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        proc = self._proc
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                    # The leader is gone; its group may still hold forked
                    # children: one more signal for them, then move on.
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                except subprocess.TimeoutExpired:
                    continue
            if proc.stdout is not None:
                proc.stdout.close()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_python_module(
    module: str, args: list[str], timeout: float, sockserve_src: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` in the suite's environment, bounded by ``timeout``."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=child_env(sockserve_src),
        check=False,
    )
