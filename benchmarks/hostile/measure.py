"""One cell of the matrix: one attack on one server, and everything measured around it.

The order, for every cell:

1. start the server (a fresh process: nothing carries over from another cell)
   and check that a fresh client is served before anything else happens;
2. note the server's usage and the length of its log (the baseline);
3. start the attack in a thread; once its clients are in place, a fresh
   client tries every 0.5 s (each must have its echo within 2 s) until the
   attack ends, while the server's process tree is sampled every 0.1 s and
   its ``stats()`` asked for every 0.5 s. Only probes that ended before the
   attack stopped count (one served because the attackers left proves
   nothing), and the stats shown are the last taken before that moment;
4. after the attack's clients are gone and a short settling pause, one more
   fresh client (did the server recover?) and a last look at its usage;
5. count the log lines the server wrote since step 2, then stop it.

Everything has a deadline: an attack that does not end by itself is told to
stop, a server that does not answer is killed.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import ServerError
from benchmarks.hostile.attacks import ATTACKS, AttackResult, Prober, ProbeResult, probe
from benchmarks.hostile.catalog import Attack, Strategy
from benchmarks.hostile.connections import PROBE_INTERVAL_S, PROBE_TIMEOUT_S
from benchmarks.hostile.process import HostileServer, Sampler, Usage
from benchmarks.servers import HOST

#: Longest wait for an attack to be in place (its connect phase is bounded below this).
READY_TIMEOUT_S = 8.0
#: Beyond its duration, how long an attack may take to wind up (drains, closes).
ATTACK_GRACE_S = 6.0
#: Between the attack's end and the recovery probe: the server notices the closes.
SETTLE_S, QUICK_SETTLE_S = 1.0, 0.3
#: Log lines kept in the results (the first and the last few), to show what was said.
LOG_SAMPLE_LINES = 3
TRACEBACK = b"Traceback (most recent call last)"


def run_cell(attack: Attack, strategy: Strategy, *, quick: bool, log_dir: Path) -> dict[str, Any]:
    """Measure ``attack`` on ``strategy``; a dict ready for JSON (``error`` set if it failed)."""
    params = attack.params(quick)
    cell: dict[str, Any] = {
        "attack": attack.name,
        "strategy": strategy.name,
        "params": params,
        "nofile": attack.nofile,
        "control": attack.control,
        "ok": False,
        "error": None,
    }
    log_path = log_dir / f"{attack.name}--{strategy.name}.log"
    cell["log_path"] = str(log_path)
    server = HostileServer(strategy.name, log_path, nofile=attack.nofile)
    try:
        server.start()
    except ServerError as exc:
        cell["error"] = f"server did not start: {exc}"
        return cell
    try:
        cell["server"] = server.info
        _attack_and_watch(server, attack, params, quick, cell)
    finally:
        # The log window ends before the server is asked to stop: stopping is not the attack.
        log_end = log_path.stat().st_size if log_path.exists() else 0
        cell["server_stats_after"] = server.stop()
        if "log_offset" in cell:
            cell["log"] = _log_summary(log_path, cell.pop("log_offset"), log_end)
    return cell


def _attack_and_watch(
    server: HostileServer, attack: Attack, params: dict[str, Any], quick: bool, cell: dict[str, Any]
) -> None:
    address = (HOST, server.port)
    before = probe(address)
    cell["probe_before"] = _probe_dict(before, before.started)
    if not before.ok:
        cell["error"] = f"the server did not serve a fresh client before the attack: {before.error}"
        return
    cell["log_offset"] = server.log_path.stat().st_size
    ready, stop = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = ATTACKS[attack.function](address, **params, ready=ready, stop=stop)
        except Exception as exc:  # reported in the cell; the harness goes on
            outcome["error"] = repr(exc)
            ready.set()

    attacker = threading.Thread(target=run, name=f"attack-{attack.name}", daemon=True)
    with Sampler(server.measure_pid, stats=server.ask_stats) as sampler:
        baseline = sampler.samples[0]
        attacker.start()
        ready.wait(READY_TIMEOUT_S)
        cell["ready_after_s"] = round(time.monotonic() - sampler.started, 2)
        with Prober(address) as prober:
            attacker.join(params["duration"] + ATTACK_GRACE_S)
            if attacker.is_alive():
                stop.set()
                attacker.join(ATTACK_GRACE_S)
        # A pause, not a wait: nothing tells when the server has noticed the closes.
        time.sleep(QUICK_SETTLE_S if quick else SETTLE_S)
        after = probe(address)
        end = sampler.last
    cell["alive"] = server.alive()
    cell["probe_after"] = _probe_dict(after, after.started)
    cell["usage"] = _usage_summary(baseline, sampler.peak, end)
    if attacker.is_alive():
        cell["error"] = "the attack did not end by itself"
        return
    if "error" in outcome:
        cell["error"] = f"the attack failed: {outcome['error']}"
        return
    result: AttackResult = outcome["result"]
    # Only probes that ended while the attack was on count: one still waiting when
    # the attackers left may have been served because they left.
    faced = [p for p in prober.results if p.ended <= result.ended_at]
    since = prober.results[0].started if prober.results else 0.0
    cell["probes"] = [_probe_dict(p, since) for p in prober.results]
    cell["probes_after_attack_ended"] = len(prober.results) - len(faced)
    cell["fresh_client"] = _probe_summary(faced)
    cell["attack_counts"] = result.counts
    cell["attack_summary"] = result.summary
    cell["server_stats"] = sampler.stats_before(result.ended_at)
    cell["ok"] = True


def _probe_dict(result: ProbeResult, since: float) -> dict[str, Any]:
    return {
        "at_s": round(result.started - since, 3),
        "ok": result.ok,
        "took_ms": round(result.took_s * 1000, 2),
        "error": result.error,
    }


def _probe_summary(results: list[ProbeResult]) -> dict[str, Any]:
    """Served / tried, latency of the served ones, and why the others were not."""
    latencies = sorted(r.took_s * 1000 for r in results if r.ok)
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error or "?"] = errors.get(r.error or "?", 0) + 1
    return {
        "tried": len(results),
        "served": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "errors": errors,
        "timeout_s": PROBE_TIMEOUT_S,
        "interval_s": PROBE_INTERVAL_S,
    }


def _usage_summary(baseline: Usage, peak: Usage, end: Usage) -> dict[str, Any]:
    return {
        "baseline": baseline.__dict__,
        "peak": peak.__dict__,
        "end": end.__dict__,
        "rss_delta_peak_bytes": peak.rss_bytes - baseline.rss_bytes,
        "cpu_s": round(end.cpu_s - baseline.cpu_s, 2),
    }


def _log_summary(path: Path, start: int, end: int) -> dict[str, Any]:
    """What the server wrote to its log between two offsets: lines, bytes, tracebacks, a sample."""
    try:
        with path.open("rb") as log:
            log.seek(start)
            data = log.read(max(0, end - start))
    except OSError as exc:
        return {"error": str(exc)}
    lines = data.splitlines()
    sample = lines[:LOG_SAMPLE_LINES]
    if len(lines) > 2 * LOG_SAMPLE_LINES:
        sample += [b"..."]
    sample += lines[max(LOG_SAMPLE_LINES, len(lines) - LOG_SAMPLE_LINES) :]
    return {
        "lines": len(lines),
        "bytes": len(data),
        "tracebacks": data.count(TRACEBACK),
        "sample": [line[:240].decode(errors="replace") for line in sample],
    }
