"""The hostile-client results as markdown: an overview, then one table per attack.

Everything shown is read from the results document, so a report can be
rebuilt from the JSON of an earlier run (``--render-only``) without attacking
anything again.
"""

from __future__ import annotations

from typing import Any

from benchmarks.hostile.catalog import ATTACKS, STRATEGIES

MiB = 1 << 20

#: Server stats worth a glance after an attack (the rest stays in the JSON).
_STATS_SHOWN = (
    ("active", "active"),
    ("busy_workers", "busy"),
    ("pending", "pending"),
    ("timed_out", "timed out"),
    ("handler_errors", "handler errors"),
    ("peer_errors", "peer errors"),
    ("disconnects", "disconnects"),
)


def _fresh(cell: dict[str, Any]) -> str:
    """ "8/10" with a mark: every probe served, some, or none."""
    fresh = cell.get("fresh_client")
    if not fresh or not fresh["tried"]:
        return "n/a"
    served, tried = fresh["served"], fresh["tried"]
    mark = "yes" if served == tried else ("NO" if served == 0 else "partly")
    return f"{mark} {served}/{tried}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _latency(cell: dict[str, Any]) -> str:
    fresh = cell.get("fresh_client") or {}
    if fresh.get("p50_ms") is None:
        return "-"
    return f"{_ms(fresh['p50_ms'])} / {_ms(fresh['max_ms'])}"


def _after(cell: dict[str, Any]) -> str:
    if not cell.get("alive", True):
        return "DEAD"
    after = cell.get("probe_after")
    if not after:
        return "-"
    return "ok" if after["ok"] else f"FAIL ({after['error']})"


def _usage(cell: dict[str, Any]) -> tuple[str, str, str, str]:
    usage = cell.get("usage")
    if not usage:
        return "-", "-", "-", "-"
    base, peak = usage["baseline"], usage["peak"]
    rss = usage["rss_delta_peak_bytes"] / MiB
    return (
        f"{peak['threads']} ({base['threads']})",
        f"{peak['fds']} ({base['fds']})",
        f"{rss:+.1f}",
        f"{usage['cpu_s']:.1f}",
    )


def _log(cell: dict[str, Any]) -> str:
    log = cell.get("log")
    if not log or "lines" not in log:
        return "-"
    text = f"{log['lines']} ({log['bytes'] / 1024:.0f} KiB)"
    if log["tracebacks"]:
        text += f", {log['tracebacks']} tb"
    return text


def _stats(cell: dict[str, Any]) -> str:
    stats = cell.get("server_stats")
    if not isinstance(stats, dict) or "error" in stats:
        return "-"
    parts = [f"{label} {stats[key]}" for key, label in _STATS_SHOWN if stats.get(key)]
    rejected = stats.get("rejected") or {}
    parts += [f"rejected {reason} {n}" for reason, n in rejected.items() if n]
    errors = stats.get("accept_errors") or {}
    parts += [f"accept errors {kind} {n}" for kind, n in errors.items() if n]
    return ", ".join(parts) or "all zero"


_HEADER = (
    "| strategy | fresh client served | p50 / max ms | after | attackers | "
    "peak threads (before) | peak fds (before) | RSS delta MiB | CPU s | log lines | "
    "stats as the attack ended |"
)


def _row(cell: dict[str, Any]) -> str:
    if cell.get("error") and not cell.get("fresh_client"):
        return f"| {cell['strategy']} | error: {cell['error'][:200]} |" + " |" * 9
    threads, fds, rss, cpu = _usage(cell)
    attackers = cell.get("attack_summary") or f"error: {cell.get('error')}"
    cols = [
        cell["strategy"],
        _fresh(cell),
        _latency(cell),
        _after(cell),
        attackers,
        threads,
        fds,
        rss,
        cpu,
        _log(cell),
        _stats(cell),
    ]
    return "| " + " | ".join(c.replace("|", "/") for c in cols) + " |"


def _ordered(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(attack, its cells in strategy order), in catalog order."""
    rank = {s.name: i for i, s in enumerate(STRATEGIES)}
    by_attack: dict[str, list[dict[str, Any]]] = {}
    for cell in results["cells"]:
        by_attack.setdefault(cell["attack"], []).append(cell)
    order = [a.name for a in ATTACKS if a.name in by_attack]
    order += [name for name in by_attack if name not in order]
    return [
        (name, sorted(by_attack[name], key=lambda c: rank.get(c["strategy"], 99))) for name in order
    ]


def _overview(results: dict[str, Any]) -> list[str]:
    ordered = _ordered(results)
    strategies = [
        s.name for s in STRATEGIES if any(c["strategy"] == s.name for _, cs in ordered for c in cs)
    ]
    lines = [
        "| attack | " + " | ".join(strategies) + " |",
        "|---|" + "---|" * len(strategies),
    ]
    for name, cells in ordered:
        by_strategy = {c["strategy"]: c for c in cells}
        marks = []
        for strategy in strategies:
            cell = by_strategy.get(strategy)
            if cell is None:
                marks.append("")
            elif cell.get("error") and not cell.get("fresh_client"):
                marks.append("error")
            else:
                text = _fresh(cell)
                if cell.get("control") and (cell.get("attack_counts") or {}).get("cut"):
                    text += ", CUT"
                marks.append(text)
        lines.append(f"| {name} | " + " | ".join(marks) + " |")
    return lines


def _machine(machine: dict[str, Any]) -> str:
    parts = [
        f"{machine.get('nproc', '?')} CPUs ({machine.get('cpu_model', '?')})",
        f"Linux {machine.get('kernel', '?')}",
        str(machine.get("python", "Python ?")),
    ]
    if machine.get("git"):
        parts.append(f"sockserve at {machine['git']}")
    return ", ".join(parts)


def _load(meta: dict[str, Any]) -> str:
    load = meta.get("load_average")
    if not load:
        return ""
    return f", load average {load['before'][0]:.1f} before and {load['after'][0]:.1f} after"


def render(results: dict[str, Any]) -> str:
    """The whole page."""
    meta = results["meta"]
    titles = {a.name: a for a in ATTACKS}
    out = [
        "# Hostile clients: what each server does",
        "",
        f"Measured {meta['started']} with `{meta['command']}` "
        f"({'quick run' if meta['quick'] else 'full run'}, {meta['elapsed_s'] / 60:.1f} min) "
        f"on {_machine(results.get('machine') or {})}{_load(meta)}.",
        "",
        "Each cell: a fresh server process, one attack from 127.0.0.1, and meanwhile a fresh "
        f"client from the same address every {meta['probe_interval_s']:g} s (connect, send a "
        f"line, read the echo; served if the echo is back within {meta['probe_timeout_s']:g} s). "
        '"after" is one more fresh client once the attack\'s clients have gone. Threads, '
        "descriptors and RSS are sampled from /proc every 0.1 s over the server's process tree "
        "(the runner: master and workers); the baseline is in parentheses. Log lines are what "
        "the server wrote to stderr (logging at INFO) from the attack's start until the "
        '"after" client; "tb" counts tracebacks. Stats are the last `stats()` the server '
        "gave before the attack ended (asked every 0.5 s; the stdlib has none, and the "
        "runner's live in its workers).",
        "",
        "## Fresh client served during the attack",
        "",
        *_overview(results),
        "",
        "Strategies:",
        "",
        # Only the strategies measured (a run with --only leaves some out).
        *[f"- `{s.name}`: {s.what}" for s in STRATEGIES if s.name in meta["strategies"]],
        "",
    ]
    for name, cells in _ordered(results):
        attack = titles.get(name)
        out += [f"## {name}", ""]
        if attack is not None:
            params = ", ".join(f"{k}={v}" for k, v in cells[0]["params"].items())
            limit = f"; server under RLIMIT_NOFILE={attack.nofile}" if attack.nofile else ""
            out += [f"{attack.title} (`{attack.function}({params})`{limit}).", ""]
        out += [_HEADER, "|---" * 11 + "|"]
        out += [_row(cell) for cell in cells]
        out.append("")
    return "\n".join(out)
