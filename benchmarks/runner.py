"""The measurement loop: rounds x cells x servers, interleaved, with progress.

Order matters on a machine whose speed drifts: within a round every server
runs a cell before the next cell starts (A B C, A B C, ...), so the baseline
it is compared with was measured moments earlier, not minutes.
"""

from __future__ import annotations

import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.catalog import ServerSpec, split_name
from benchmarks.cells import Cell
from benchmarks.harness import ServerUnavailable
from benchmarks.workloads import Context, run_cell


@dataclass
class Matrix:
    """What to run: the cells, the servers, and which server can run which protocol."""

    cells: list[Cell]
    servers: list[ServerSpec]
    #: server -> protocol -> None (available) or the reason it is not
    availability: dict[str, dict[str, str | None]]
    rounds: int
    #: (server, protocol) pairs found unavailable only when started
    discovered: dict[tuple[str, str], str] = field(default_factory=dict)
    #: servers compared pairwise (new, old): adjacent in ``servers``, they
    #: swap places every other round so neither always runs first
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def status(self, cell: Cell, spec: ServerSpec) -> tuple[bool, str | None]:
        """(runs, reason): reason is None both for runnable and not-applicable pairs."""
        if cell.proto not in spec.protocols:
            return False, None
        if cell.servers and split_name(spec.name)[0] not in cell.servers:
            return False, None
        reason = self.availability.get(spec.name, {}).get(cell.proto, "not probed")
        reason = reason or self.discovered.get((spec.name, cell.proto))
        if reason:
            return False, f"not available: {reason}"
        skip = spec.skip_reason(cell.workload, cell.key)
        if skip:
            return False, f"skipped: {skip}"
        return True, None

    def order(self, number: int) -> list[ServerSpec]:
        """The servers in the order round ``number`` runs them.

        Whatever runs second in a pair inherits the first one's leftovers
        (TIME_WAIT sockets, a warmer CPU cache, a frequency step); alternating
        spreads that over both sides instead of always charging one.
        """
        order = list(self.servers)
        if number % 2:
            return order
        pairs = set(self.pairs)
        i = 0
        while i < len(order) - 1:
            if (order[i].name, order[i + 1].name) in pairs:
                order[i], order[i + 1] = order[i + 1], order[i]
                i += 2
            else:
                i += 1
        return order

    def jobs(self) -> list[tuple[int, Cell, ServerSpec]]:
        return [
            (number, cell, spec)
            for number in range(1, self.rounds + 1)
            for cell in self.cells
            for spec in self.order(number)
            if self.status(cell, spec)[0]
        ]


#: What a failed run raises (a bug in the suite itself still stops it).
RUN_FAILURES = (OSError, RuntimeError, ValueError, KeyError, subprocess.SubprocessError)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def headline(cell: Cell, metrics: dict[str, Any]) -> str:
    """A one-line summary of a run for the progress output."""
    if cell.workload == "shutdown":
        close = metrics.get("close_idle_ms")
        close_text = "blocked" if close is None else f"{close:.1f} ms"
        return f"shutdown {metrics['shutdown_ms']:.1f} ms, close with idle client {close_text}"
    if cell.workload == "idle":
        kib = metrics.get("kib_per_conn")
        kib_text = "-" if kib is None else f"{kib:.1f} KiB/conn"
        return (
            f"served {metrics['served']}/{metrics['conns']}, {kib_text}, "
            f"{metrics['server_threads']} threads"
        )
    parts = []
    if cell.workload == "burst":
        parts.append(
            f"served {metrics['served']}/{metrics['conns']} in {metrics['elapsed_s']:.2f} s"
        )
    else:
        parts.append(f"{metrics['rate']:,.0f} {cell.unit}")
    if metrics.get("p99_us") is not None:
        parts.append(f"p99 {metrics['p99_us'] / 1000:.2f} ms")
    if cell.workload in ("pingpong", "churn"):
        parts.append(f"served {metrics['served']}/{metrics['conns']}")
    if metrics.get("server_cpu_us_per_op") is not None:
        parts.append(f"server {metrics['server_cpu_us_per_op']:.1f} us/op")
    if metrics.get("client_cpu_us_per_op") is not None:
        parts.append(f"client {metrics['client_cpu_us_per_op']:.1f} us/op")
    if metrics.get("errors"):
        parts.append(f"errors {metrics['errors']}")
    if metrics.get("mismatches"):
        parts.append(f"MISMATCHED BYTES {metrics['mismatches']}")
    return ", ".join(parts)


def execute(
    matrix: Matrix, ctx: Context, say: Callable[[str], None], max_seconds: float | None = None
) -> list[dict[str, Any]]:
    """Run every job once, in order; returns one record per run attempted."""
    jobs = matrix.jobs()
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    width = max((len(spec.name) for spec in matrix.servers), default=10)
    for index, (number, cell, spec) in enumerate(jobs, 1):
        if not matrix.status(cell, spec)[0]:
            continue  # found unavailable in an earlier round
        elapsed = time.monotonic() - started
        if max_seconds is not None and elapsed > max_seconds:
            say(f"time limit of {max_seconds:.0f} s reached: stopping before the remaining jobs")
            break
        t0 = time.monotonic()
        record: dict[str, Any] = {"round": number, "cell": cell.key, "server": spec.name}
        try:
            record["metrics"] = run_cell(cell, spec.name, ctx)
            record["ok"] = True
            text = headline(cell, record["metrics"])
        except ServerUnavailable as exc:
            matrix.discovered[(spec.name, cell.proto)] = str(exc)
            record.update(ok=False, unavailable=str(exc))
            text = f"not available: {exc}"
        except RUN_FAILURES as exc:  # one failed run must not lose the others
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            record["traceback"] = traceback.format_exc()
            text = f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"
        record["seconds"] = time.monotonic() - t0
        records.append(record)
        done_s = time.monotonic() - started
        eta = done_s / index * (len(jobs) - index)
        say(
            f"[{index:4d}/{len(jobs)} {_clock(done_s)} eta {_clock(eta)}] "
            f"r{number} {cell.key:<20} {spec.name:<{width}} {text}"
        )
    return records
