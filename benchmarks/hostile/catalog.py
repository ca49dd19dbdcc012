"""Which attacks and which servers (strategies) the hostile-client harness knows.

Metadata only: the harness process imports no sockserve (each server runs in
its own subprocess, see :mod:`benchmarks.hostile.servers`). An attack's
parameters come in two sizes: the full run, as the issue on hostile clients
states them, and ``--quick`` (a CI smoke run: short, but every number the
attack's name promises, such as the 40 of ``slowloris-40``, is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MiB = 1 << 20


@dataclass(frozen=True)
class Strategy:
    """One server under attack."""

    name: str
    #: What it is, in the words of its API.
    what: str


STRATEGIES: tuple[Strategy, ...] = (
    Strategy(
        "stdlib-threading",
        "socketserver.ThreadingTCPServer + StreamRequestHandler, as users run it "
        "(listen backlog 5, a thread per client, no limits)",
    ),
    Strategy(
        "sockserve-pool",
        "sockserve.ThreadPoolTCPServer, defaults (32 workers, 32 pending, block on overflow, "
        "idle_timeout 300 s, max_line 64 KiB)",
    ),
    Strategy(
        "sockserve-pool-idle2", "sockserve.ThreadPoolTCPServer(idle_timeout=2), as in the issue"
    ),
    Strategy(
        "sockserve-async",
        "sockserve.AsyncTCPServer + AsyncStreamRequestHandler (readline/write/drain), defaults "
        "(idle_timeout 300 s, max_line 64 KiB, uvloop when installed)",
    ),
    Strategy(
        "sockserve-run-2",
        "sockserve run benchmarks.hostile.sockserve_handlers:LineEcho --workers 2 "
        "(runner defaults: a pool of 32 threads per worker, access log on)",
    ),
)


@dataclass(frozen=True)
class Attack:
    """One hostile (or, for controls, legitimate) client load."""

    name: str
    #: What it does, one line.
    title: str
    #: The function in :data:`benchmarks.hostile.attacks.ATTACKS`.
    function: str
    #: Its keyword arguments for a full run (``duration`` included) ...
    full: dict[str, Any] = field(default_factory=dict)
    #: ... and what ``--quick`` changes.
    quick: dict[str, Any] = field(default_factory=dict)
    #: RLIMIT_NOFILE (soft) the server runs under; None: raised to the hard limit.
    nofile: int | None = None
    #: A legitimate client: being cut or starved is the failure.
    control: bool = False

    def params(self, quick: bool) -> dict[str, Any]:
        return {**self.full, **self.quick} if quick else dict(self.full)


_HOLD_S, _QUICK_HOLD_S = 10.0, 2.5

ATTACKS: tuple[Attack, ...] = (
    Attack(
        "slowloris-40",
        "40 clients each send one byte a second, never a newline",
        "slowloris",
        {"clients": 40, "duration": _HOLD_S},
        {"duration": _QUICK_HOLD_S},
    ),
    Attack(
        "slowloris-200",
        "200 clients each send one byte a second, never a newline",
        "slowloris",
        {"clients": 200, "duration": _HOLD_S},
        {"duration": _QUICK_HOLD_S},
    ),
    Attack(
        "slowloris-line-200",
        "200 clients each send one whole line, then one byte a second, never a newline",
        "slowloris",
        {"clients": 200, "duration": _HOLD_S, "line_first": True},
        {"duration": _QUICK_HOLD_S},
    ),
    Attack(
        "silent-1000",
        "1,000 clients connect and never send anything",
        "silent",
        {"clients": 1000, "duration": _HOLD_S},
        {"duration": _QUICK_HOLD_S},
    ),
    Attack(
        "slow-reader",
        "40 clients each ask for 10 MiB (BIG line) and never read it",
        "slow_reader",
        {"clients": 40, "duration": _HOLD_S, "size": 10 * MiB},
        {"clients": 5, "duration": _QUICK_HOLD_S, "size": 2 * MiB},
    ),
    Attack(
        "reset-burst",
        "5,000 connects in about 1 s, each closed with an RST (SO_LINGER 0) once established",
        "reset_burst",
        {"connections": 5000, "duration": 5.0, "burst_s": 1.0},
        {"connections": 500, "duration": 2.0, "burst_s": 0.5},
    ),
    Attack(
        "garbage",
        "20 clients each send 1 MiB without a newline at full speed, then hold "
        "(a cut client reconnects and starts again)",
        "garbage",
        {"clients": 20, "duration": _HOLD_S, "size": MiB},
        {"clients": 3, "duration": _QUICK_HOLD_S},
    ),
    Attack(
        "nofile-40",
        "server under RLIMIT_NOFILE=64; 40 clients connect at once, send a line, stay",
        "fd_exhaustion",
        {"clients": 40, "duration": _HOLD_S},
        {"duration": _QUICK_HOLD_S},
        nofile=64,
    ),
    Attack(
        "nofile-100",
        "server under RLIMIT_NOFILE=64; 100 clients connect at once, send a line, stay",
        "fd_exhaustion",
        {"clients": 100, "duration": _HOLD_S},
        {"duration": _QUICK_HOLD_S},
        nofile=64,
    ),
    Attack(
        "exception-storm",
        "10,000 requests (32 at a time) whose line makes the handler raise",
        "exception_storm",
        {"requests": 10000, "duration": 15.0, "concurrency": 32},
        {"requests": 300, "duration": 3.0},
    ),
    Attack(
        "control-slow-read",
        "control: one legitimate client reads a 10 MiB answer at 1 KiB/s (no other load)",
        "slow_reader",
        {"clients": 1, "duration": _HOLD_S, "size": 10 * MiB, "read_rate": 1024},
        {"duration": 3.0},
        control=True,
    ),
    Attack(
        "control-interactive",
        "control: one legitimate client sends a line every 3 s and reads the echo",
        "interactive",
        {"duration": _HOLD_S, "interval": 3.0},
        {"duration": 4.0},
        control=True,
    ),
)


def select(names: list[str] | None) -> tuple[list[Attack], list[Strategy]]:
    """The attacks and strategies ``names`` pick (all of a kind when none of it is named).

    A name picks an attack, a strategy, or every attack whose name starts with
    it and a dash ("slowloris" picks the three slowloris attacks); an unknown
    name is a ``ValueError`` listing the known ones.
    """
    if not names:
        return list(ATTACKS), list(STRATEGIES)
    attacks = [a for a in ATTACKS if any(a.name == n or a.name.startswith(n + "-") for n in names)]
    strategies = [s for s in STRATEGIES if s.name in names]
    known = {a.name for a in attacks} | {s.name for s in strategies}
    unknown = [n for n in names if n not in known and not any(k.startswith(n + "-") for k in known)]
    if unknown:
        everything = [a.name for a in ATTACKS] + [s.name for s in STRATEGIES]
        raise ValueError(f"unknown name(s): {', '.join(unknown)}; known: {', '.join(everything)}")
    return attacks or list(ATTACKS), strategies or list(STRATEGIES)
