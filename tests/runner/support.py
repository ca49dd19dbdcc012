"""Child processes whose output is read as it comes, with a deadline, and line-protocol clients.

Every wait here is bounded: a log line, an exit, a socket call. The tests wait
for what the runner says (its log lines), for what the kernel says (``/proc``,
pidfds, connection results), never for a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

#: Bound on every single wait: a log line, a socket call, an exit.
TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

HANDLER = "tests.runner.targets.mod:Handler"

# Log lines of a run with --workers N (every line starts with "[PID] ").
STARTED = r"^\[\d+\] INFO sockserve\.master: worker (\d+) started \(pid (\d+)\)$"
LISTENING = r"^(?:\[\d+\] )?INFO sockserve\.(?:master|cli): \S+ listening on (\S+)$"


def child_env(*paths: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a child: ``src``, the repository root and ``paths`` importable.

    Settings and systemd variables of the test run itself are left out, so
    that only what a test sets reaches the runner.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SOCKSERVE_")
        and key not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(REPO), *map(str, paths)])
    # Edited modules must be read again on reload, even within the same second.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def sockserve_argv(*args: str) -> list[str]:
    # -X dev: the child reports unclosed resources and other warnings on stderr.
    return [sys.executable, "-X", "dev", "-m", "sockserve", *args]


class Child:
    """A process in its own session; a thread collects its stdout and stderr as they come.

    Reading all the time matters: a server that logs a line per connection
    would block on a full pipe otherwise. ``close()`` kills the whole process
    group: a master, its workers, and any orphan a test provoked.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        cwd: Path | str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else child_env(),
            pass_fds=tuple(pass_fds),
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.output = ""  # stderr so far
        self.stdout = ""
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"read-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        streams = {self.proc.stderr.fileno(): "output", self.proc.stdout.fileno(): "stdout"}
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            while streams:
                for key, _events in selector.select():
                    fd = key.fd
                    chunk = os.read(fd, 65536)
                    with self._changed:
                        if chunk:
                            name = streams[fd]
                            setattr(
                                self, name, getattr(self, name) + chunk.decode(errors="replace")
                            )
                        else:
                            selector.unregister(fd)
                            del streams[fd]
                        self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv[-6:])!r} (pid {self.pid}, exit {self.proc.poll()});\n"
            f"stderr so far:\n{self.output}\nstdout so far:\n{self.stdout}"
        )

    def mark(self) -> int:
        """A position in ``output``: pass it as ``start`` to wait only for newer lines."""
        with self._changed:
            return len(self.output)

    def lines(self, pattern: str, start: int = 0) -> list[re.Match[str]]:
        """The complete lines from ``start`` on that match ``pattern`` (anchored per line)."""
        with self._changed:
            output = self.output
        complete = output[start : output.rfind("\n") + 1]
        return list(re.finditer(pattern, complete, re.MULTILINE))

    def wait_for(
        self, pattern: str, *, count: int = 1, start: int = 0, timeout: float = TIMEOUT
    ) -> list[re.Match[str]]:
        """Wait until ``count`` lines from ``start`` on match ``pattern``; return the matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self.lines(pattern, start)) < count:
                if self._eof:
                    raise AssertionError(f"exited before {pattern!r} x{count}; {self.describe()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out on {pattern!r} x{count}; {self.describe()}")
                self._changed.wait(remaining)
        return found

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Wait for end of file on its output (every process of the group that held the
        pipes is gone), then return the exit status."""
        deadline = time.monotonic() + timeout
        with self._changed:
            if not self._changed.wait_for(lambda: self._eof, timeout):
                raise AssertionError(f"still running after {timeout} s; {self.describe()}")
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    # -- the runner's lines ---------------------------------------------------

    def listening(self, count: int = 1) -> list[str]:
        return [m[1] for m in self.wait_for(LISTENING, count=count)]

    def port(self) -> int:
        return int(self.listening()[0].rpartition(":")[2])

    def started(self, start: int = 0) -> list[tuple[int, int]]:
        """(index, pid) of every "worker N started" line so far."""
        return [(int(m[1]), int(m[2])) for m in self.lines(STARTED, start)]

    # -- control --------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def children_of(pid: int) -> set[int]:
    """The live children of ``pid`` (Linux: /proc/PID/task/*/children)."""
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found.update(
                    int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                )
    return found


def wait_pid_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    """Wait until a process that is not our child exits (a pidfd becomes readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            return bool(selector.select(timeout))
    finally:
        os.close(fd)


def listening_inodes(port: int) -> set[int]:
    """Inodes of the sockets in LISTEN state on ``port`` (any address), from /proc/net/tcp*."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                    found.add(int(fields[9]))
    return found


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    found.add(int(link[8:-1]))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll kernel state that no event announces (/proc) until ``predicate()`` or the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# -- clients -----------------------------------------------------------------------------


class Conn:
    """A client connection that speaks the line protocol of ``targets.mod``."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self._buffer = b""

    def ask(self, line: bytes | str = b"pid") -> str:
        """Send one line, return the answer line (without its newline)."""
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data.rstrip(b"\n") + b"\n")
        return self.read_line()

    def read_line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed; got {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def at_eof(self) -> bool:
        """Whether the server ended the connection (EOF or reset), within the timeout."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ask(port: int, line: bytes | str = b"pid", timeout: float = TIMEOUT) -> str:
    """One connection, one line, one answer."""
    with Conn(port, timeout=timeout) as conn:
        return conn.ask(line)


def pids_serving(port: int, want: int, attempts: int = 400) -> set[str]:
    """Connect until ``want`` different processes answered (or ``attempts`` ran out)."""
    seen: set[str] = set()
    for _ in range(attempts):
        seen.add(ask(port))
        if len(seen) >= want:
            break
    return seen


class Load:
    """A client thread: connect, one round trip, close; again and again, counting errors."""

    def __init__(self, port: int, line: str, limit: float = 40.0) -> None:
        self.port = port
        self.line = line
        self.answers: list[str] = []
        self.errors: list[str] = []
        self._limit = limit
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="load")

    def _run(self) -> None:
        end = time.monotonic() + self._limit
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                answer = ask(self.port, self.line, timeout=5.0)
            except OSError as exc:
                answer = ""
                self.errors.append(f"{exc!r} after {len(self.answers)} answers")
            with self._progress:
                if answer:
                    self.answers.append(answer)
                self._progress.notify_all()

    def wait_answers(self, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until ``count`` answers came in, in all."""
        with self._progress:
            assert self._progress.wait_for(
                lambda: len(self.answers) >= count or not self._thread.is_alive(), timeout
            ), f"load stalled at {len(self.answers)} answers, errors {self.errors}"
        assert len(self.answers) >= count, f"load ended early, errors {self.errors}"

    def wait_answer(self, predicate: Callable[[str], bool], start: int) -> None:
        """Wait until an answer from index ``start`` on satisfies ``predicate``."""

        def found() -> bool:
            return any(predicate(a) for a in self.answers[start:])

        with self._progress:
            assert self._progress.wait_for(
                lambda: found() or not self._thread.is_alive(), TIMEOUT
            ), f"no such answer after {len(self.answers) - start}; errors {self.errors}"
        assert found(), f"load ended early, errors {self.errors}"

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


@contextlib.contextmanager
def connections(port: int, count: int) -> Iterator[list[Conn]]:
    opened: list[Conn] = []
    try:
        for _ in range(count):
            opened.append(Conn(port))
        yield opened
    finally:
        for conn in opened:
            conn.close()


def render_deploy_config(config: Path, replacements: dict[str, str]) -> str:
    """A deploy/ configuration file with each address replaced in its one (uncommented) line."""
    lines = config.read_text().splitlines(keepends=True)
    for old, new in replacements.items():
        where = [
            i for i, line in enumerate(lines) if old in line and not line.lstrip().startswith("#")
        ]
        assert len(where) == 1, f"{old!r} should be in exactly one line of {config}"
        lines[where[0]] = lines[where[0]].replace(old, new)
    return "".join(lines)
