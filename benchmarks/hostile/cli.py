"""``python -m benchmarks.hostile``: attack each server, write the table and the JSON.

Outputs: an unfiltered full run writes ``benchmarks/.build/hostile.md`` and
``hostile.json``; a ``--quick`` or ``--only`` run writes ``hostile-quick.*`` or
``hostile-partial.*`` beside them, so a partial run never replaces a full
one. ``--markdown``/``--json`` choose other paths (the published page, when
someone decides to publish it). Server logs go to ``.build/hostile-logs/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BUILD_DIR
from benchmarks.hostile.catalog import ATTACKS, STRATEGIES, Attack, Strategy, select
from benchmarks.hostile.connections import PROBE_INTERVAL_S, PROBE_TIMEOUT_S
from benchmarks.hostile.measure import run_cell
from benchmarks.hostile.report import render
from benchmarks.machine import describe, sysctl
from benchmarks.servers import raise_fd_limit

#: A quick run that overruns this starts no further cell (the smoke test's budget).
QUICK_TIME_LIMIT_S = 45.0
#: What decides the fate of a client a full listen backlog leaves waiting (stdlib: 5).
BACKLOG_SYSCTLS = ("tcp_syncookies", "tcp_abort_on_overflow", "tcp_synack_retries")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hostile",
        description="Attack servers with hostile clients (bounded in time) and report, per "
        "attack and server, whether a fresh client is still served and what the server used.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short attacks, smaller crowds"
    )
    parser.add_argument(
        "--only",
        help="comma-separated attacks and/or strategies (an attack prefix such as "
        "'slowloris' picks all of its kind; see --list)",
    )
    parser.add_argument("--list", action="store_true", help="list attacks and strategies, exit")
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--markdown", type=Path, help="where to write the report")
    parser.add_argument("--log-dir", type=Path, help="where the servers' logs go")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rebuild the report from an existing results JSON (--json, or the default)",
    )
    return parser.parse_args(argv)


def _names(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def default_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(json, markdown) for this run."""
    stem = "hostile-quick" if args.quick else ("hostile-partial" if args.only else "hostile")
    json_path = args.json or BUILD_DIR / f"{stem}.json"
    md_path = args.markdown or BUILD_DIR / f"{stem}.md"
    return json_path, md_path


def list_everything() -> None:
    print("attacks (full parameters; --quick changes those after 'quick:'):")
    for attack in ATTACKS:
        full = ", ".join(f"{k}={v}" for k, v in attack.full.items())
        quick = ", ".join(f"{k}={v}" for k, v in attack.quick.items())
        limit = f" [RLIMIT_NOFILE={attack.nofile}]" if attack.nofile else ""
        print(f"  {attack.name:<20} {attack.title}{limit}")
        print(f"  {'':<20} {attack.function}({full}); quick: {quick}")
    print("strategies:")
    for strategy in STRATEGIES:
        print(f"  {strategy.name:<20} {strategy.what}")


def measure(
    attacks: list[Attack], strategies: list[Strategy], args: argparse.Namespace
) -> dict[str, Any]:
    """Every (attack, strategy) cell, in catalog order; the results document."""
    log_dir = args.log_dir or BUILD_DIR / "hostile-logs"
    cells: list[dict[str, Any]] = []
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    t0 = time.monotonic()
    total = len(attacks) * len(strategies)
    for attack in attacks:
        for strategy in strategies:
            if args.quick and time.monotonic() - t0 > QUICK_TIME_LIMIT_S:
                cells.append(_skipped(attack, strategy, "skipped: quick time limit reached"))
                continue
            t_cell = time.monotonic()
            try:
                cell = run_cell(attack, strategy, quick=args.quick, log_dir=log_dir)
            except Exception as exc:  # a harness bug in one cell must not lose the others
                cell = _skipped(attack, strategy, f"harness error: {exc!r}")
                cell["params"] = attack.params(args.quick)
            cell["elapsed_s"] = round(time.monotonic() - t_cell, 2)
            cells.append(cell)
            print(f"[{len(cells)}/{total}] {_progress(cell)}", flush=True)
    command = "python -m benchmarks.hostile " + shlex.join(args.argv)
    return {
        "meta": {
            "command": command.strip(),
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "elapsed_s": round(time.monotonic() - t0, 1),
            "quick": args.quick,
            # The machine may be shared: how busy it was says how far to trust latencies.
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "sysctl": {name: sysctl(f"net/ipv4/{name}") for name in BACKLOG_SYSCTLS},
            "probe_interval_s": PROBE_INTERVAL_S,
            "probe_timeout_s": PROBE_TIMEOUT_S,
            "strategies": {s.name: s.what for s in strategies},
            "attacks": {a.name: a.title for a in attacks},
        },
        "machine": describe({}),
        "cells": cells,
    }


def _skipped(attack: Attack, strategy: Strategy, why: str) -> dict[str, Any]:
    """A cell that was not measured, and why."""
    return {
        "attack": attack.name,
        "strategy": strategy.name,
        "params": attack.params(True),
        "ok": False,
        "error": why,
    }


def _progress(cell: dict[str, Any]) -> str:
    head = f"{cell['attack']} x {cell['strategy']}"
    if cell.get("error"):
        return f"{head}: {cell['error'][:300]}"
    fresh = cell["fresh_client"]
    peak = cell["usage"]["peak"]
    log = cell.get("log", {})
    return (
        f"{head}: fresh client {fresh['served']}/{fresh['tried']}, "
        f"after {'ok' if cell['probe_after']['ok'] else 'FAIL'}, {cell['attack_summary']}; "
        f"peak threads {peak['threads']}, fds {peak['fds']}, "
        f"log {log.get('lines', '?')} lines ({cell['elapsed_s']:.1f} s)"
    )


def write(results: dict[str, Any], json_path: Path | None, md_path: Path) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {json_path}")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(render(results))
    print(f"wrote {md_path}")


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 every cell measured, 1 some could not be, 2 usage error."""
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.list:
        list_everything()
        return 0
    json_path, md_path = default_paths(args)
    if args.render_only:
        try:
            results = json.loads(json_path.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: cannot read {json_path}: {exc}", file=sys.stderr)
            return 2
        write(results, None, md_path)
        return 0
    try:
        attacks, strategies = select(_names(args.only))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit()  # a thousand silent clients live in this process
    results = measure(attacks, strategies, args)
    write(results, json_path, md_path)
    failed = [c for c in results["cells"] if not c["ok"]]
    print(f"done in {results['meta']['elapsed_s'] / 60:.1f} min, {len(failed)} cell(s) failed")
    return 1 if failed else 0
