"""``python -m benchmarks``: parse options, probe, build, run, write the report.

Outputs: an unfiltered full run writes docs/benchmarks.md, its plots under
docs/benchmarks/ and the raw results as docs/benchmarks/results.json. A quick
run, or one narrowed with --only/--workloads, writes under
benchmarks/.build/ instead (benchmarks/.build/compare/ when it compares
revisions), so a partial run never replaces the published page.
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

from benchmarks import loadgen, tlscerts, wrk
from benchmarks.catalog import (
    BASELINE,
    BY_NAME,
    QUICK_SERVERS,
    REVISION_MARK,
    SERVERS,
    ServerSpec,
    select,
    with_revisions,
)
from benchmarks.cells import WORKLOADS, Cell, plan
from benchmarks.comparisons import parse_versus
from benchmarks.harness import BUILD_DIR, REPO, run_python_module
from benchmarks.machine import describe
from benchmarks.plots import make_all
from benchmarks.report import render
from benchmarks.revisions import Revision, RevisionError, export_all
from benchmarks.runner import Matrix, execute
from benchmarks.stats import pair_ratios, summarize
from benchmarks.tlscerts import DEFAULT_KEY_TYPE, KEY_TYPES, CertificateError, TLSFiles
from benchmarks.workloads import Context

FULL_DURATION_S = 1.0
QUICK_DURATION_S = 0.3
#: A quick run that overruns this stops starting new jobs (the smoke test's budget).
QUICK_TIME_LIMIT_S = 45.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark sockserve against the stdlib and asyncio/uvloop/gevent peers.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny durations, stdlib/asyncio/sockserve only, one round",
    )
    parser.add_argument("--only", help="comma-separated server names (see --list)")
    parser.add_argument(
        "--workloads", help=f"comma-separated workloads ({', '.join(WORKLOADS)}) or cell keys"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick: 1)")
    parser.add_argument(
        "--duration",
        type=float,
        help=f"seconds per timed run (default {FULL_DURATION_S}; quick: {QUICK_DURATION_S})",
    )
    parser.add_argument(
        "--compare-rev",
        action="append",
        default=[],
        metavar="REV",
        help="also run each selected sockserve kind with sockserve from git revision REV "
        "(named KIND@HASH; the benchmark code stays this tree's) and report new/old "
        "ratios per pair; repeatable",
    )
    parser.add_argument(
        "--versus",
        metavar="A/B,...",
        help="server/peer pairs for the report's versus table (default: sockserve-async "
        "against uvloop-protocol, uvloop-streams and asyncio-streams, "
        "sockserve-run-async-1 against uvloop-protocol, and the PROXY kinds against their "
        "plain kinds); shown where both ran",
    )
    parser.add_argument(
        "--tls-key",
        choices=sorted(KEY_TYPES),
        default=DEFAULT_KEY_TYPE,
        help=f"key type of the TLS workloads' certificates (default {DEFAULT_KEY_TYPE}; an "
        "RSA handshake costs the server several times more)",
    )
    parser.add_argument("--json", type=Path, help="where to write the raw results")
    parser.add_argument("--markdown", type=Path, help="where to write the report")
    parser.add_argument("--plots-dir", type=Path, help="where to write the PNG plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rebuild the report and plots from an existing results JSON (no measuring)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list servers (with availability here) and workloads, then exit",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    if args.duration is not None and not 0.1 <= args.duration <= 60:
        parser.error("--duration must be between 0.1 and 60 seconds")
    return args


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def probe(sockserve_src: Path | None = None) -> dict[str, Any]:
    """Ask a server subprocess what is available (keeps frameworks out of this process).

    ``sockserve_src``: probe with that revision of sockserve on the path.
    """
    done = run_python_module("benchmarks.servers", ["--probe"], 90, sockserve_src=sockserve_src)
    if done.returncode != 0:
        raise SystemExit(f"probing the servers failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def probe_revision(revision: Revision) -> dict[str, dict[str, str | None]]:
    """Availability of the sockserve kinds at ``revision``, under their ``KIND@LABEL`` names.

    Also the first check that the export is what the servers import: a
    probe that found sockserve elsewhere would make the comparison compare
    a tree with itself.
    """
    found = probe(revision.src)
    path = found.get("sockserve_path")
    if not path or not Path(path).resolve().is_relative_to(revision.src.resolve()):
        raise RevisionError(
            f"with {revision.src} first on PYTHONPATH the servers import sockserve from "
            f"{path}: an import hook shadows it, so {revision.rev} cannot be measured"
        )
    kinds: dict[str, dict[str, str | None]] = found["kinds"]
    availability = {
        f"{name}{REVISION_MARK}{revision.label}": protos
        for name, protos in kinds.items()
        if BY_NAME[name].family == "sockserve"
    }
    _without_wrk(availability)
    return availability


def choose_cells(cells: list[Cell], wanted: list[str] | None, quick: bool) -> list[Cell]:
    """Filter by workload name or cell key; a quick run leaves HTTP out unless asked.

    HTTP needs wrk, an external program; the smoke run sticks to what the
    repository itself builds.
    """
    if wanted is None:
        return [c for c in cells if not (quick and c.workload == "http")]
    known = set(WORKLOADS) | {c.key for c in cells}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(
            f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [c for c in cells if c.workload in wanted or c.key in wanted]


def outputs(args: argparse.Namespace, narrowed: bool) -> tuple[Path, Path, Path | None]:
    """(json, markdown, plots dir or None) for this run."""
    if args.quick or narrowed:
        name = "compare" if args.compare_rev else "quick" if args.quick else "partial"
        base = BUILD_DIR / name
        default_json, default_md, default_plots = (
            base / "results.json",
            base / "benchmarks.md",
            base,
        )
    else:
        docs = REPO / "docs"
        default_json = docs / "benchmarks" / "results.json"
        default_md = docs / "benchmarks.md"
        default_plots = docs / "benchmarks"
    plots_dir = args.plots_dir or default_plots
    if args.no_plots or (args.quick and args.plots_dir is None):
        plots_dir = None
    return args.json or default_json, args.markdown or default_md, plots_dir


def list_everything(availability: dict[str, dict[str, str | None]]) -> None:
    for spec in SERVERS:
        marks = ", ".join(
            f"{p}: {'yes' if availability[spec.name].get(p) is None else 'no'}"
            for p in spec.protocols
        )
        print(f"{spec.name:<28} {marks}")
        for proto, reason in availability[spec.name].items():
            if reason:
                print(f"{'':<28}   {proto}: {reason}")
    print()
    for cell in plan(quick=False, duration=FULL_DURATION_S):
        print(f"{cell.workload:<9} {cell.key:<22} {cell.title}")
        if cell.servers:
            print(f"{'':<32} only: {', '.join(cell.servers)}")
    print(f"\nwrk: {wrk.find() or 'not installed (HTTP workload unavailable)'}")


def availability_here(say: Any) -> tuple[dict[str, dict[str, str | None]], dict[str, Any]]:
    """(server -> protocol -> reason or None, versions), HTTP marked off without wrk."""
    say(f"probing servers ({sys.executable})")
    found = probe()
    availability: dict[str, dict[str, str | None]] = found["kinds"]
    _without_wrk(availability)
    return availability, found["versions"]


def _without_wrk(availability: dict[str, dict[str, str | None]]) -> None:
    """Mark HTTP unavailable everywhere when wrk, its load generator, is missing."""
    if not wrk.find():
        for protos in availability.values():
            if protos.get("http", "n/a") is None:
                protos["http"] = "wrk is not installed (apt-get install -y wrk)"


def selection(args: argparse.Namespace) -> tuple[list[ServerSpec], list[Cell], int, float]:
    """(servers, cells, rounds, duration) the options ask for; ValueError for unknown names."""
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (QUICK_DURATION_S if args.quick else FULL_DURATION_S)
    specs = select(_split(args.only) or (list(QUICK_SERVERS) if args.quick else None))
    cells = choose_cells(
        plan(quick=args.quick, duration=duration), _split(args.workloads), args.quick
    )
    return specs, cells, rounds, duration


def measure(
    args: argparse.Namespace,
    *,
    exe: Path,
    availability: dict[str, dict[str, str | None]],
    versions: dict[str, Any],
    say: Any,
    revisions: list[Revision] | None = None,
    tls: TLSFiles | None = None,
) -> tuple[dict[str, Any], list[Cell]]:
    """Run the matrix the options select; returns the results document and its cells.

    ``availability`` must already hold the kinds of ``revisions`` (``probe_revision``)
    and say why TLS is unavailable when ``tls`` is None (``prepare_tls``).
    """
    revisions = revisions or []
    specs, cells, rounds, duration = selection(args)
    versus = parse_versus(args.versus, set(BY_NAME))
    specs, pairs = add_revisions(specs, revisions, say)
    matrix = Matrix(
        cells=cells, servers=specs, availability=availability, rounds=rounds, pairs=pairs
    )
    for spec in specs:
        for reason in sorted({r for r in availability[spec.name].values() if r}):
            say(f"{spec.name}: not available: {reason}")
    say(
        f"{len(matrix.jobs())} runs: {len(cells)} workload cells x {len(specs)} servers x "
        f"{rounds} round(s), {duration:g} s per timed run"
    )
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    sources = {revision.label: revision.src for revision in revisions}
    ctx = Context(exe=exe, log_dir=BUILD_DIR / "logs", sources=sources, tls=tls)
    runs = execute(matrix, ctx, say, QUICK_TIME_LIMIT_S if args.quick else None)
    for (name, proto), reason in matrix.discovered.items():
        availability[name][proto] = reason
    command = "python -m benchmarks " + shlex.join(args.argv)
    results: dict[str, Any] = {
        "meta": {
            "command": command.strip(),
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "elapsed_s": time.monotonic() - t0,
            "rounds": rounds,
            "duration_s": duration,
            "quick": args.quick,
            "baseline": BASELINE,
            "revisions": [revision.as_dict() for revision in revisions],
            "tls": _tls_meta(tls, runs),
        },
        "machine": describe(versions),
        "availability": {spec.name: availability[spec.name] for spec in specs},
        "cells": [cell.__dict__ for cell in cells],
        "runs": runs,
        "summary": summarize(runs, cells, BASELINE),
        "comparisons": {
            "revisions": pair_ratios(runs, cells, pairs),
            "versus": pair_ratios(runs, cells, versus),
        },
    }
    return results, cells


def prepare_tls(
    args: argparse.Namespace, availability: dict[str, dict[str, str | None]], say: Any
) -> TLSFiles | None:
    """This run's certificates, if it has TLS cells and can run them.

    Otherwise TLS is marked unavailable for every server, with the reason (no
    OpenSSL headers for the load generator, no openssl command), the way a
    missing wrk marks HTTP: the rest of the run goes ahead.
    """
    if not any(cell.proto == "tls" for cell in selection(args)[1]):
        return None
    reason = loadgen.tls_missing()
    files = None
    if reason is None:
        try:
            files = tlscerts.generate(BUILD_DIR / "tls", args.tls_key)
        except CertificateError as exc:
            reason = str(exc)
    if reason is not None:
        say(f"TLS workloads not available: {reason}")
        for protos in availability.values():
            if protos.get("tls", "n/a") is None:
                protos["tls"] = reason
    return files


def _tls_meta(tls: TLSFiles | None, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Key type and what the client negotiated (from its first completed TLS run)."""
    if tls is None:
        return None
    first = next((r["metrics"] for r in runs if r.get("ok") and "tls_version" in r["metrics"]), {})
    return {
        "key_type": tls.key_type,
        "server_name": tls.server_name,
        "version": first.get("tls_version"),
        "cipher": first.get("tls_cipher"),
        "client_library": first.get("tls_library"),
    }


def add_revisions(
    specs: list[ServerSpec], revisions: list[Revision], say: Any
) -> tuple[list[ServerSpec], list[tuple[str, str]]]:
    """(servers with each sockserve kind also at every revision, the (new, old) pairs)."""
    if not revisions:
        return specs, []
    compared = [spec for spec in specs if spec.family == "sockserve"]
    if not compared:
        say("--compare-rev: no sockserve kind selected, nothing to compare")
        return specs, []
    for revision in revisions:
        say(f"compared with {revision.label} ({revision.rev}): {revision.subject}")
    labels = [revision.label for revision in revisions]
    pairs = [
        (spec.name, f"{spec.name}{REVISION_MARK}{label}") for spec in compared for label in labels
    ]
    return with_revisions(specs, labels), pairs


def main(argv: list[str] | None = None) -> int:
    """The command; exit status 0 (all runs done, all bytes verified), 1 (some not), 2 (usage)."""
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.render_only:
        return render_only(args)
    say = _printer()
    availability, versions = availability_here(say)
    if args.list:
        list_everything(availability)
        return 0
    try:
        selection(args)  # unknown names fail here, before anything is built or run
        parse_versus(args.versus, set(BY_NAME))
        exe = loadgen.build()
        revisions = export_all(args.compare_rev)
        for revision in revisions:
            availability.update(probe_revision(revision))
    except (loadgen.LoadgenError, RevisionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    say(f"load generator: {exe}")
    json_path, md_path, plots_dir = outputs(args, narrowed=bool(args.only or args.workloads))
    tls = prepare_tls(args, availability, say)
    try:
        results, cells = measure(
            args,
            exe=exe,
            availability=availability,
            versions=versions,
            say=say,
            revisions=revisions,
            tls=tls,
        )
    finally:
        if tls is not None:
            tlscerts.remove(tls.directory)
    write_outputs(
        results, cells=cells, json_path=json_path, md_path=md_path, plots_dir=plots_dir, say=say
    )
    runs = results["runs"]
    failures = [r for r in runs if not r.get("ok") and r.get("error")]
    mismatched = [r for r in runs if r.get("ok") and r["metrics"].get("mismatches")]
    # A run that completed but whose every operation failed (a server that
    # refused the load generator's TLS, say) measured nothing: not a success.
    served_none = [
        r
        for r in runs
        if r.get("ok") and not r["metrics"].get("ops") and _error_count(r["metrics"])
    ]
    say(
        f"done in {results['meta']['elapsed_s'] / 60:.1f} min: {len(runs)} runs, "
        f"{len(failures)} failed, {len(mismatched)} with mismatched bytes, "
        f"{len(served_none)} with errors and no operation"
    )
    return 1 if failures or mismatched or served_none else 0


def _error_count(metrics: dict[str, Any]) -> int:
    """The load generator's errors of one run (a number, or counts by kind)."""
    errors = metrics.get("errors") or 0
    return sum(errors.values()) if isinstance(errors, dict) else int(errors)


def render_only(args: argparse.Namespace) -> int:
    """Re-render a finished run (for changes to the report code; numbers stay as measured)."""
    json_path, md_path, plots_dir = outputs(args, narrowed=False)
    try:
        results = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {json_path}: {exc}", file=sys.stderr)
        return 2
    cells = [Cell(**cell) for cell in results["cells"]]
    if args.versus is not None:
        try:
            versus = parse_versus(args.versus, set(BY_NAME))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        results.setdefault("comparisons", {})["versus"] = pair_ratios(
            results["runs"], cells, versus
        )
    write_outputs(
        results, cells=cells, json_path=None, md_path=md_path, plots_dir=plots_dir, say=_printer()
    )
    return 0


def write_outputs(
    results: dict[str, Any],
    *,
    cells: list[Cell],
    json_path: Path | None,
    md_path: Path,
    plots_dir: Path | None,
    say: Any,
) -> None:
    """Results JSON first (the plots and report are derived from it)."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
        say(f"wrote {json_path}")
    plot_links: dict[str, str] = {}
    if plots_dir is not None:
        try:
            for key, path in make_all(results, plots_dir).items():
                plot_links[key] = os.path.relpath(path, md_path.parent)
            say(f"wrote {len(plot_links)} plots to {plots_dir}")
        except ImportError:
            say("matplotlib is not installed: no plots (pip install -e '.[bench]')")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(render(results, cells, plot_links))
    say(f"wrote {md_path}")


def _printer() -> Any:
    """Progress lines, flushed at once (a full run takes minutes)."""

    def say(text: str) -> None:
        print(text, flush=True)

    return say
