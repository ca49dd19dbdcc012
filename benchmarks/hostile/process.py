"""The server subprocess under attack, and what its process tree uses while it is attacked.

The server is started as :mod:`benchmarks.harness` starts the main suite's
(its own session, readiness read from its first stdout line with a deadline,
the process group killed at the end), with stdin kept open: closing it asks
the server for its ``stats()`` line before it exits (see
:mod:`benchmarks.hostile.servers`).

Threads and RSS come from :mod:`benchmarks.procstat`; open descriptors are
counted here from ``/proc/PID/fd``, summed over the tree (the runner's master
and workers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from benchmarks.harness import REPO, ServerError, ServerUnavailable, child_env, read_line
from benchmarks.procstat import PROC, descendants, sample_tree

START_TIMEOUT_S = 30.0
#: How long a server gets to print its stats once asked.
STATS_TIMEOUT_S = 5.0
#: Between two looks at the server's process tree.
SAMPLE_INTERVAL_S = 0.1


class HostileServer:
    """``with HostileServer(strategy, log_path) as server:`` a server on ``server.port``."""

    def __init__(self, strategy: str, log_path: Path, *, nofile: int | None = None) -> None:
        self.strategy = strategy
        self.log_path = log_path
        self.nofile = nofile
        self.port = 0
        #: The root of the process tree to measure (the runner's master, not its wrapper).
        self.measure_pid = 0
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Launch and wait for the port line; ServerError if it never comes."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", "benchmarks.hostile.servers", "--strategy", self.strategy]
        if self.nofile is not None:
            command += ["--nofile", str(self.nofile)]
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            env=child_env(),
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        line = read_line(self._proc.stdout, time.monotonic() + START_TIMEOUT_S)
        if not line:
            code = self._proc.poll()
            self.kill()
            tail = self.log_path.read_text(errors="replace")[-2000:].strip()
            if code == 3:
                raise ServerUnavailable(tail.splitlines()[-1] if tail else "unavailable")
            raise ServerError(f"{self.strategy} did not start (exit {code}): {tail}")
        self.info = json.loads(line)
        self.port = int(self.info["port"])
        self.measure_pid = int(self.info.get("measure_pid", self.info["pid"]))

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ask_stats(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The server's ``stats()`` now (None: it has none, or did not answer in time)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            return None
        try:
            proc.stdin.write(b"stats\n")
            proc.stdin.flush()
        except OSError:
            return None  # it is gone: the caller sees that from alive()
        line = read_line(proc.stdout, time.monotonic() + timeout)
        if line is None:
            return {"error": f"no stats within {timeout:g} s"}
        return _stats_line(line)

    def stop(self) -> dict[str, Any] | None:
        """Ask for the stats line (close stdin), then make sure the whole group is gone."""
        stats: dict[str, Any] | None = None
        proc = self._proc
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass  # it died meanwhile: there is nothing to ask
            assert proc.stdout is not None
            stats = _stats_line(read_line(proc.stdout, time.monotonic() + STATS_TIMEOUT_S))
        self.kill()
        return stats

    def kill(self) -> None:
        """SIGKILL the process group (forked workers too) and reap the leader."""
        proc = self._proc
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass  # a broken pipe on close: the reader is gone, as intended
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
        self.kill()


def _stats_line(line: bytes | None) -> dict[str, Any] | None:
    if not line:
        return None
    try:
        stats: dict[str, Any] | None = json.loads(line).get("stats")
    except ValueError:
        return {"error": f"unreadable stats line: {line[:200]!r}"}
    return stats


# -- sampling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What a process tree holds at one moment."""

    threads: int
    fds: int
    rss_bytes: int
    cpu_s: float
    processes: int


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0  # gone between the walk and this look


def usage(root: int) -> Usage:
    """Threads, open descriptors, RSS, CPU seconds and processes of ``root``'s tree."""
    tree = sample_tree(root)
    fds = sum(_fd_count(pid) for pid in descendants(root))
    return Usage(tree.threads, fds, tree.rss_bytes, tree.cpu_s, tree.processes)


class Sampler:
    """``with Sampler(pid) as sampler:`` looks at the tree every ``interval`` seconds.

    ``peak`` is the largest of each measure seen (each on its own: threads and
    RSS need not peak at the same moment), ``last`` the latest look. Given a
    ``stats`` callable, it also asks the server for its stats every
    ``stats_every`` looks (until the first answer is None: no stats there),
    keeping ``(time.monotonic(), stats)`` pairs.
    """

    def __init__(
        self,
        root: int,
        *,
        interval: float = SAMPLE_INTERVAL_S,
        stats: Callable[[], dict[str, Any] | None] | None = None,
        stats_every: int = 5,
    ) -> None:
        self.root = root
        self.interval = interval
        self.started = 0.0
        self.samples: list[Usage] = []
        self.stats: list[tuple[float, dict[str, Any]]] = []
        self._ask_stats = stats
        self._stats_every = stats_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-sampler", daemon=True)

    def _run(self) -> None:
        n = 0
        while True:
            self.samples.append(usage(self.root))
            if self._ask_stats is not None and n % self._stats_every == 0:
                asked = time.monotonic()
                answer = self._ask_stats()
                if answer is None:
                    self._ask_stats = None
                else:
                    self.stats.append((asked, answer))
            n += 1
            if self._stop.wait(self.interval):
                return

    def stats_before(self, moment: float) -> dict[str, Any] | None:
        """The last stats asked for before ``moment`` (monotonic), if any."""
        earlier = [stats for asked, stats in self.stats if asked <= moment]
        return earlier[-1] if earlier else None

    @property
    def peak(self) -> Usage:
        s = self.samples
        return Usage(
            threads=max(u.threads for u in s),
            fds=max(u.fds for u in s),
            rss_bytes=max(u.rss_bytes for u in s),
            cpu_s=max(u.cpu_s for u in s),
            processes=max(u.processes for u in s),
        )

    @property
    def last(self) -> Usage:
        return self.samples[-1]

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self.samples.append(usage(self.root))
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.samples.append(usage(self.root))
