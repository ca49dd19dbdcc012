"""Building the C load generator and running it.

The binary is named after a hash of its source and compiler flags, so an
edited loadgen.c is never run stale and two checkouts never fight over one
file. The compiler is the system's ``cc`` (or ``$CC``); without one the suite
stops with a message saying what to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import BUILD_DIR, read_line

SOURCE = Path(__file__).resolve().with_name("loadgen.c")
CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-D_GNU_SOURCE")
#: Slack on top of a run's own duration before the wrapper gives up on it.
GRACE_S = 15.0


class LoadgenError(RuntimeError):
    """The load generator could not be built, or a run failed."""


def build(build_dir: Path = BUILD_DIR) -> Path:
    """Compile loadgen.c once per source version; return the executable."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise LoadgenError(
            "no C compiler found (looked for $CC or 'cc'): the load generator is C; "
            "install one, e.g. apt-get install -y gcc"
        )
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:12]
    exe = build_dir / f"loadgen-{digest}"
    if exe.exists():
        return exe
    build_dir.mkdir(parents=True, exist_ok=True)
    partial = build_dir / f".loadgen-{digest}.{os.getpid()}"
    done = subprocess.run(
        [compiler, *CFLAGS, "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise LoadgenError(f"compiling {SOURCE.name} failed:\n{done.stderr}")
    os.replace(partial, exe)  # atomic: a concurrent build never sees half a file
    return exe


def local_ports() -> int:
    """How many ephemeral ports one source address has (net.ipv4.ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 28232  # Linux's default range, 32768-60999
    return high - low + 1


def sources_for(conns: int) -> int:
    """Loopback source addresses needed so ``conns`` connections use at most half of each
    address's ephemeral ports (the rest stay free for TIME_WAIT and other programs)."""
    return min(254, max(1, -(-2 * conns // local_ports())))


def fd_shortfall(conns: int) -> str | None:
    """Why the load generator cannot hold ``conns`` sockets (None: it can).

    The load generator raises its soft limit up to the hard one, which it
    inherits from this process; this process first tries to raise the hard
    one (allowed with CAP_SYS_RESOURCE). Short of that, a run would only
    count EMFILEs, so it is refused with the limit to change.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = conns + 64
    if hard == resource.RLIM_INFINITY or hard >= need:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, need))
    except (ValueError, OSError):
        return f"{conns} connections need ulimit -Hn >= {need} (it is {hard})"
    return None


def _command(exe: Path, mode: str, port: int, options: dict[str, Any]) -> list[str]:
    command = [str(exe), mode, "--port", str(port)]
    for key, value in options.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def _parse(stdout: str, command: list[str]) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise LoadgenError(f"no result line from {' '.join(command)}")


def run(exe: Path, mode: str, port: int, *, bound_s: float, **options: Any) -> dict[str, Any]:
    """One load run; ``bound_s`` is how long it may take at most (its own limit)."""
    command = _command(exe, mode, port, options)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=bound_s + GRACE_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadgenError(f"{' '.join(command)} overran its bound") from exc
    if done.returncode != 0:
        raise LoadgenError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return _parse(done.stdout, command)


@contextmanager
def held_connections(
    exe: Path,
    port: int,
    *,
    conns: int,
    size: int,
    timeout: float,
    hold: float,
    ramp: int = 0,
    sources: int = 1,
) -> Iterator[dict[str, Any]]:
    """Open ``conns`` connections, one round trip each, and keep them while the body runs.

    Yields the load generator's result line (printed once the connections are
    established); leaving the block closes its stdin, which releases them.
    ``ramp``: at most that many connections opening at once (0: all);
    ``sources``: spread them over that many loopback source addresses.
    """
    options = {"conns": conns, "size": size, "timeout": timeout, "hold": hold}
    if ramp:
        options["ramp"] = ramp
    if sources > 1:
        options["sources"] = sources
    command = _command(exe, "hold", port, options)
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = read_line(proc.stdout, time.monotonic() + timeout + GRACE_S)
        if not line:
            raise LoadgenError(f"{' '.join(command)} printed no result")
        yield _parse(line.decode(), command)
    finally:
        # SIGTERM, not only EOF on stdin: a forking server under test may have
        # inherited our end of the pipe (fork without exec keeps it open), and
        # then EOF never comes. The kernel closes the sockets with a FIN.
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
