"""Hostile clients, each bounded in time, importable by tests as well as by the harness.

Every attack takes the server's address and keyword parameters, runs in the
calling thread, and returns an :class:`AttackResult` (what the clients saw:
how many connected, how many the server cut and when, ...) within about
``duration`` seconds, whatever the server does. Two optional events let a
caller run something alongside: ``ready`` is set once the attack is in place
(its clients connected), so fresh-client probes start then; ``stop`` ends the
attack early. Sockets are closed on every path (tests run with
``filterwarnings = error``).

The server under test speaks the line echo of :mod:`benchmarks.hostile.handlers`.
The floods (resets, over-long lines, failing requests) live in
:mod:`benchmarks.hostile.floods`, the fresh client and its prober in
:mod:`benchmarks.hostile.connections`; all are re-exported here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.hostile.connections import (
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    Address,
    AttackResult,
    Crowd,
    Prober,
    ProbeResult,
    attack_events,
    errno_name,
    open_connections,
    probe,
)
from benchmarks.hostile.floods import exception_storm, garbage, reset_burst
from benchmarks.hostile.handlers import BIG

__all__ = [
    "ATTACKS",
    "PROBE_INTERVAL_S",
    "PROBE_TIMEOUT_S",
    "AttackResult",
    "Prober",
    "ProbeResult",
    "exception_storm",
    "fd_exhaustion",
    "garbage",
    "hold",
    "interactive",
    "probe",
    "reset_burst",
    "silent",
    "slow_reader",
    "slowloris",
]

MiB = 1 << 20
#: The longest an attack spends opening its connections (a full backlog drops SYNs).
CONNECT_PHASE_S = 5.0
#: After the attack, the longest spent reading what slow readers were owed.
DRAIN_S = 3.0


def _cut_summary(counts: dict[str, Any], of: int) -> str:
    if not counts["cut"]:
        return f"cut 0/{of}"
    first, last = counts["first_cut_s"], counts["last_cut_s"]
    return f"cut {counts['cut']}/{of} at {first:.1f}-{last:.1f} s"


# -- holding connections open: slowloris and silence ---------------------------------


def hold(
    address: Address,
    *,
    clients: int,
    duration: float,
    dribble: bytes | None,
    first_line: bytes | None = None,
    interval: float = 1.0,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """Open ``clients`` connections, optionally send a line, then send ``dribble`` every
    ``interval`` seconds (or nothing), noting which connections the server cuts."""
    ready, stop = attack_events(ready, stop)
    started = time.monotonic()
    end = started + duration
    crowd = Crowd(started)
    try:
        socks, failed = open_connections(address, clients, min(end, started + CONNECT_PHASE_S))
        for sock in socks:
            crowd.add(sock)
        if first_line:
            crowd.send_each(first_line)
        ready.set()
        while not stop.is_set() and (now := time.monotonic()) < end:
            if dribble:
                crowd.send_each(dribble)
            crowd.watch(min(end, now + interval), stop)
        ended = time.monotonic()
        counts: dict[str, float | int | None] = {
            "clients": clients,
            "connected": len(socks),
            "connect_failed": failed,
            **crowd.cut_counts(),
            "bytes_received": crowd.received,
        }
    finally:
        ready.set()
        crowd.close()
    summary = _cut_summary(counts, len(socks))
    if failed:
        summary += f", {failed} never connected"
    return AttackResult(counts, summary, ended)


def slowloris(
    address: Address,
    *,
    clients: int,
    duration: float,
    line_first: bool = False,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """One byte per second per client, never a newline (``line_first``: after one whole line)."""
    return hold(
        address,
        clients=clients,
        duration=duration,
        dribble=b"x",
        first_line=b"a complete line first\n" if line_first else None,
        ready=ready,
        stop=stop,
    )


def silent(
    address: Address,
    *,
    clients: int,
    duration: float,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """Connect and never send anything."""
    return hold(address, clients=clients, duration=duration, dribble=None, ready=ready, stop=stop)


# -- slow readers ----------------------------------------------------------------------


def slow_reader(
    address: Address,
    *,
    clients: int,
    duration: float,
    size: int = 10 * MiB,
    read_rate: int = 0,
    rcvbuf: int = 4096,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """Ask for ``size`` bytes, then read ``read_rate`` bytes a second of it (0: never read).

    A small receive buffer keeps the window small, so the server's writes
    block early instead of parking megabytes in the kernel. Whether the server
    gave up on a client shows only once its data is read: at the end every
    client reads what it is owed (for up to ``DRAIN_S``); a stream that ends
    before ``size`` bytes was cut, a complete one was waited for.
    """
    ready, stop = attack_events(ready, stop)
    started = time.monotonic()
    end = started + duration
    crowd = Crowd(started)
    got: dict[socket.socket, int] = {}
    try:
        socks, failed = open_connections(
            address, clients, min(end, started + CONNECT_PHASE_S), rcvbuf=rcvbuf
        )
        for sock in socks:
            crowd.add(sock)
            got[sock] = 0
        crowd.send_each(BIG + str(size).encode() + b"\n")
        ready.set()
        while not stop.is_set() and (now := time.monotonic()) < end:
            if read_rate:
                for sock in crowd.sockets():
                    got[sock] += len(crowd.read(sock, read_rate))
            stop.wait(min(1.0, end - now))
        ended = time.monotonic()
        read_during = crowd.received
        cut_during = len(crowd.cuts)
        complete = _drain(crowd, got, size, time.monotonic() + DRAIN_S)
        counts: dict[str, float | int | None] = {
            "clients": clients,
            "connected": len(socks),
            "connect_failed": failed,
            **crowd.cut_counts(),
            "cut_during_attack": cut_during,
            "complete": complete,
            "bytes_read_during_attack": read_during,
        }
    finally:
        ready.set()
        crowd.close()
    stuck = len(socks) - complete - int(counts["cut"] or 0)
    summary = f"cut {counts['cut']}/{len(socks)}, complete {complete}"
    if stuck:
        summary += f", unfinished {stuck}"
    if read_rate:
        summary += f", read {read_during // 1024} KiB"
    return AttackResult(counts, summary, ended)


def _drain(crowd: Crowd, got: dict[socket.socket, int], size: int, deadline: float) -> int:
    """Read what each open connection is still owed until ``deadline``; how many got all.

    A stream that ends early is recorded as a cut; one still unfinished at the
    deadline is left open (the server is still waiting on it).
    """
    complete = 0
    for sock in crowd.sockets():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            # A larger window now: the drain is bookkeeping, not part of the attack.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MiB)
            while got[sock] < size:
                data = sock.recv(min(MiB, size - got[sock]))
                if not data:
                    crowd.cut(sock, "eof")
                    break
                got[sock] += len(data)
        except TimeoutError:
            continue
        except OSError as exc:
            crowd.cut(sock, errno_name(exc))
            continue
        complete += got[sock] >= size
    return complete


# -- out of descriptors ----------------------------------------------------------------


def fd_exhaustion(
    address: Address,
    *,
    clients: int,
    duration: float,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """``clients`` connect at once, each sends a line and stays; which got their echo,
    which were accepted and then closed without one, which are still waiting."""
    ready, stop = attack_events(ready, stop)
    started = time.monotonic()
    end = started + duration
    crowd = Crowd(started)
    replies: dict[socket.socket, bytes] = {}

    def on_data(sock: socket.socket, data: bytes) -> None:
        replies[sock] += data

    try:
        socks, failed = open_connections(address, clients, min(end, started + CONNECT_PHASE_S))
        for sock in socks:
            crowd.add(sock)
            replies[sock] = b""
        crowd.send_each(b"hello\n")
        ready.set()
        crowd.watch(end, stop, on_data)
        ended = time.monotonic()
        served = sum(reply.endswith(b"\n") for reply in replies.values())
        # A socket the crowd closed is one the server ended (a cut).
        dropped = sum(
            sock.fileno() == -1 and not reply.endswith(b"\n") for sock, reply in replies.items()
        )
        counts: dict[str, float | int | None] = {
            "clients": clients,
            "connected": len(socks),
            "connect_failed": failed,
            "served": served,
            "dropped_without_reply": dropped,
            "waiting": len(socks) - served - dropped,
            **crowd.cut_counts(),
        }
    finally:
        ready.set()
        crowd.close()
    summary = f"served {served}/{clients}, dropped {dropped}, waiting {counts['waiting']}"
    if failed:
        summary += f", {failed} never connected"
    return AttackResult(counts, summary, ended)


# -- legitimate clients (controls) -----------------------------------------------------


def interactive(
    address: Address,
    *,
    duration: float,
    interval: float = 3.0,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """One client that sends a line every ``interval`` seconds and reads its echo."""
    ready, stop = attack_events(ready, stop)
    started = time.monotonic()
    end = started + duration
    sent = replies = 0
    slowest = 0.0
    cut_at: float | None = None
    how = None
    try:
        with socket.create_connection(address, timeout=PROBE_TIMEOUT_S) as sock:
            ready.set()
            while not stop.is_set() and (now := time.monotonic()) < end:
                line = f"interactive line {sent}\n".encode()
                try:
                    sock.settimeout(PROBE_TIMEOUT_S)
                    sock.sendall(line)
                    sent += 1
                    reply = b""
                    while not reply.endswith(b"\n"):
                        chunk = sock.recv(len(line) - len(reply))
                        if not chunk:
                            raise ConnectionAbortedError("eof")
                        reply += chunk
                except TimeoutError:
                    pass  # no echo in time: not a reply, but not a cut either
                except OSError as exc:
                    cut_at = time.monotonic() - started
                    how = "eof" if isinstance(exc, ConnectionAbortedError) else errno_name(exc)
                    break
                else:
                    replies += 1
                    slowest = max(slowest, time.monotonic() - now)
                stop.wait(max(0.0, min(end, now + interval) - time.monotonic()))
    except OSError as exc:
        how = f"connect: {errno_name(exc)}"
    finally:
        ready.set()
    ended = time.monotonic()
    counts: dict[str, float | int | None] = {
        "sent": sent,
        "replies": replies,
        "cut": int(cut_at is not None),
        "cut_at_s": round(cut_at, 3) if cut_at is not None else None,
        "slowest_reply_ms": round(slowest * 1000, 1),
    }
    summary = f"{replies}/{sent} echoed"
    if cut_at is not None:
        summary += f", cut at {cut_at:.1f} s ({how})"
    elif how:
        summary += f", {how}"
    return AttackResult(counts, summary, ended)


#: Attack functions by name, for the harness's catalog.
ATTACKS: dict[str, Callable[..., AttackResult]] = {
    "slowloris": slowloris,
    "silent": silent,
    "slow_reader": slow_reader,
    "reset_burst": reset_burst,
    "garbage": garbage,
    "fd_exhaustion": fd_exhaustion,
    "exception_storm": exception_storm,
    "interactive": interactive,
}
