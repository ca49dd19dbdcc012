"""Building the C load generator and running it.

The binary is named after a hash of its sources and compiler flags, so an
edited loadgen.c is never run stale and two checkouts never fight over one
file. The compiler is the system's ``cc`` (or ``$CC``); without one the suite
stops with a message saying what to install.

The TLS mode (loadgen_tls.c) links OpenSSL. It is built in when OpenSSL's
headers are installed (Debian: libssl-dev); without them the load generator
is built for plain TCP and UDP only and :func:`tls_missing` says what to
install, which the suite reports as the TLS workloads' reason for not running.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import BUILD_DIR, read_line

HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "loadgen.c", HERE / "loadgen_tls.c")
HEADERS = (HERE / "loadgen_tls.h",)
CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-D_GNU_SOURCE")
TLS_CFLAGS = ("-DLOADGEN_TLS",)
TLS_LIBS = ("-lssl", "-lcrypto")
#: Slack on top of a run's own duration before the wrapper gives up on it.
GRACE_S = 15.0


class LoadgenError(RuntimeError):
    """The load generator could not be built, or a run failed."""


def compiler() -> str:
    """The C compiler; LoadgenError says what to install without one."""
    found = shutil.which(os.environ.get("CC", "cc"))
    if found is None:
        raise LoadgenError(
            "no C compiler found (looked for $CC or 'cc'): the load generator is C; "
            "install one, e.g. apt-get install -y gcc"
        )
    return found


@functools.cache
def tls_missing() -> str | None:
    """Why the load generator has no TLS mode here (None: it has one).

    Asks the preprocessor for OpenSSL's header rather than trying a build, so
    that a genuine error in loadgen_tls.c fails the build loudly instead of
    quietly dropping the TLS workloads.
    """
    try:
        done = subprocess.run(
            [compiler(), "-E", "-x", "c", "-o", os.devnull, "-"],
            input="#include <openssl/ssl.h>\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (LoadgenError, subprocess.TimeoutExpired) as exc:
        return f"cannot check for OpenSSL's headers: {exc}"
    if done.returncode != 0:
        return (
            "the load generator was built without TLS: OpenSSL's headers are missing "
            "(apt-get install -y libssl-dev)"
        )
    return None


def build(build_dir: Path = BUILD_DIR) -> Path:
    """Compile the load generator once per source version; return the executable."""
    cc = compiler()
    tls = tls_missing() is None
    flags = (*CFLAGS, *(TLS_CFLAGS if tls else ()))
    libs = TLS_LIBS if tls else ()
    text = b"".join(path.read_bytes() for path in (*SOURCES, *HEADERS))
    digest = hashlib.sha256(text + " ".join((*flags, *libs)).encode()).hexdigest()[:12]
    exe = build_dir / f"loadgen-{digest}"
    if exe.exists():
        return exe
    build_dir.mkdir(parents=True, exist_ok=True)
    partial = build_dir / f".loadgen-{digest}.{os.getpid()}"
    done = subprocess.run(
        [cc, *flags, "-o", str(partial), *map(str, SOURCES), *libs],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        names = ", ".join(path.name for path in SOURCES)
        raise LoadgenError(f"compiling {names} failed:\n{done.stderr}")
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


def run(
    exe: Path,
    mode: str,
    port: int,
    *,
    bound_s: float,
    on_ready: Callable[[], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One load run; ``bound_s`` is how long it may take at most (its own limit).

    With ``on_ready`` (ping-pong only), every connection is opened first
    (``--warmup``: TLS handshakes included) and ``on_ready`` is called once
    they are up, just before the timed round trips: the caller's "before"
    sample then leaves the set-up out.
    """
    if on_ready is None:
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
    command = _command(exe, mode, port, {**options, "warmup": 1})
    deadline = time.monotonic() + bound_s + GRACE_S
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        line = read_line(proc.stdout, deadline)
        if not line or b'"ready"' not in line:
            proc.kill()
            raise LoadgenError(f"{' '.join(command)} never said its connections were up")
        on_ready()
        try:
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise LoadgenError(f"{' '.join(command)} overran its bound") from exc
    if proc.returncode != 0:
        raise LoadgenError(f"{' '.join(command)} failed ({proc.returncode}): {err.decode()}")
    return _parse(out.decode(), command)


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
