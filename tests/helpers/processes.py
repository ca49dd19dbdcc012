"""Child processes: one harness for every server, script and command a test runs in a subprocess.

``Child`` starts a process in its own session and reads its stdout and stderr
as they come, so a test waits for a line (with a deadline) instead of
sleeping, and a chatty child never blocks on a full pipe. With ``stdin=True``
the test can also talk to it: ``ask("stats")`` writes one command line and
returns the next line the child prints (the protocol of the helper servers in
this folder, see ``command_loop.py``).

The rest reads what the kernel says about processes and sockets (``/proc``,
pidfds), for the things no log line announces.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers.net import TIMEOUT

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
TESTS = REPO / "tests"

# Variables of the test run itself that would change what a child does.
_NOT_INHERITED = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")


def child_env(*paths: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a child: ``src``, the repository root and ``paths`` importable.

    ``src`` comes first, so the child imports this tree's sockserve and not an
    installed one. Settings and systemd variables of the test run itself are
    left out, so that only what a test sets reaches the child.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SOCKSERVE_") and key not in _NOT_INHERITED
    }
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(REPO), *map(str, paths)])
    # Edited modules must be read again on reload, even within the same second.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def sockserve_argv(*args: str) -> list[str]:
    """``python -m sockserve ARGS``; -X dev: the child reports unclosed resources on stderr."""
    return [sys.executable, "-X", "dev", "-m", "sockserve", *args]


def helper_argv(name: str, *args: str) -> list[str]:
    """``python -m helpers.NAME ARGS``: a helper server of this folder (run it with
    ``env=child_env(TESTS)``, so that ``helpers`` is importable)."""
    return [sys.executable, "-m", f"helpers.{name}", *args]


def run(
    argv: Sequence[str],
    *,
    timeout: float = TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command that is expected to exit by itself (within ``timeout``); output as text."""
    return subprocess.run(
        list(argv),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else child_env(),
        cwd=cwd,
    )


# Log lines of sockserve's runner: "TIME [PID] LEVEL LOGGER: MESSAGE". Patterns are
# matched with the timestamp taken off (see Child.lines), so they start at "[PID]".
TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d "
STARTED = r"^\[\d+\] INFO sockserve\.master: worker (\d+) started \(pid (\d+)\)$"
LISTENING = r"^(?:\[\d+\] )?INFO sockserve\.(?:master|cli): \S+ listening on (\S+)$"


class Child:
    """A process in its own session; a thread collects its stdout and stderr as they come.

    ``output`` is its stderr so far, ``stdout`` its standard output; the
    methods that look for lines take ``stream="stdout"`` to search the latter.
    ``close()`` kills the whole process group: a master, its workers, and any
    orphan a test provoked.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        cwd: Path | str | None = None,
        stdin: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
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

    def _text(self, stream: str) -> str:
        return self.stdout if stream == "stdout" else self.output

    def mark(self, stream: str = "stderr") -> int:
        """A position in the stream: pass it as ``start`` to wait only for newer lines."""
        with self._changed:
            return len(self._text(stream))

    def lines(
        self, pattern: str, start: int = 0, stream: str = "stderr", *, raw: bool = False
    ) -> list[re.Match[str]]:
        """The complete lines from ``start`` on that match ``pattern`` (anchored per line).

        Unless ``raw``, a leading log timestamp is taken off each line first:
        tests say what a line says; those of the timestamp itself pass ``raw``.
        """
        with self._changed:
            text = self._text(stream)
        complete = text[start : text.rfind("\n") + 1]
        if not raw:
            complete = re.sub(TIMESTAMP, "", complete, flags=re.MULTILINE)
        return list(re.finditer(pattern, complete, re.MULTILINE))

    def wait_for(
        self,
        pattern: str,
        *,
        count: int = 1,
        start: int = 0,
        timeout: float = TIMEOUT,
        stream: str = "stderr",
        raw: bool = False,
    ) -> list[re.Match[str]]:
        """Wait until ``count`` lines from ``start`` on match ``pattern``; return the matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self.lines(pattern, start, stream, raw=raw)) < count:
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

    # -- talking to it (stdin=True) -------------------------------------------------

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        assert self.proc.stdin is not None, "started without stdin=True"
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, line: str, timeout: float = TIMEOUT) -> str:
        """Send one command line; return the next line the child prints (no newline)."""
        mark = self.mark("stdout")
        self.send(line)
        [answer] = self.wait_for(r"^(.*)\n", start=mark, timeout=timeout, stream="stdout")[:1]
        return answer[1]

    # -- sockserve's runner -----------------------------------------------------------

    def listening(self, count: int = 1) -> list[str]:
        """Wait for ``count`` "listening on" lines; return the bound specs in order."""
        return [m[1] for m in self.wait_for(LISTENING, count=count)]

    def port(self) -> int:
        return int(self.listening()[0].rpartition(":")[2])

    def started(self, start: int = 0) -> list[tuple[int, int]]:
        """(index, pid) of every "worker N started" line so far."""
        return [(int(m[1]), int(m[2])) for m in self.lines(STARTED, start)]

    # -- control --------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, signum: int | None = None, timeout: float = TIMEOUT) -> int:
        """Send ``signum`` (SIGTERM by default); return the exit status once all its
        output has been read."""
        self.signal(signal.SIGTERM if signum is None else signum)
        return self.wait_exit(timeout)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


# -- what the kernel says ------------------------------------------------------------------


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
    """Wait until process ``pid`` exits (a pidfd becomes readable); whether it did."""
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


def wait_child_exit(pid: int, timeout: float = TIMEOUT) -> int:
    """Wait (bounded) for a child this process forked; reap it and return its exit code."""
    assert wait_pid_gone(pid, timeout), f"child {pid} still running after {timeout} s"
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


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


def open_descriptors(pid: int | str = "self") -> int:
    """How many file descriptors process ``pid`` (this one by default) has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_status(pid: int) -> dict[str, list[str]]:
    """``/proc/PID/status`` as its fields (``Threads``, ``VmRSS``...), each split in words."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields
