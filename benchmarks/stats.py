"""Turning per-round measurements into medians and same-round ratios.

Why medians of per-round ratios: this machine's speed drifts 20-30% over
minutes. A server and the baseline measured seconds apart in the same round
see the same drift, so their ratio is stable even when the absolute numbers
are not; the median over rounds then drops the odd disturbed round.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from benchmarks.cells import Cell


def median(values: Iterable[float | int | None]) -> float | None:
    """Median of the values that exist (None when there are none)."""
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _by_round(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """(cell, server) -> round -> metrics, for the runs that completed."""
    table: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for run in runs:
        if run.get("ok"):
            table[(run["cell"], run["server"])][run["round"]] = run["metrics"]
    return table


def summarize(
    runs: list[dict[str, Any]], cells: list[Cell], baseline: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """cell key -> server -> {"rounds", "median": {metric: value}, "ratio", "spread", ...}.

    ``ratio`` is the median over rounds of (server / baseline) for the cell's
    primary metric, pairing each round with the baseline's run in that round;
    ``ratio_min``/``ratio_max`` are the extremes of those per-round ratios.
    ``spread`` is (max - min) / median of the primary metric across rounds: a
    noise gauge, not a confidence interval.
    """
    table = _by_round(runs)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for cell in cells:
        per_server: dict[str, dict[str, Any]] = {}
        base_rounds = table.get((cell.key, baseline), {})
        servers = [server for (key, server) in table if key == cell.key]
        for server in servers:
            rounds = table[(cell.key, server)]
            keys = {k for metrics in rounds.values() for k, v in metrics.items() if _numeric(v)}
            medians = {k: median(m.get(k) for m in rounds.values()) for k in sorted(keys)}
            ratios = []
            for number, metrics in rounds.items():
                mine = metrics.get(cell.metric)
                theirs = base_rounds.get(number, {}).get(cell.metric)
                if _numeric(mine) and _numeric(theirs) and theirs:
                    ratios.append(mine / theirs)
            primary = [
                float(m[cell.metric]) for m in rounds.values() if _numeric(m.get(cell.metric))
            ]
            centre = median(primary)
            spread = (max(primary) - min(primary)) / centre if primary and centre else None
            flags = {
                k: sum(1 for m in rounds.values() if m.get(k) is True)
                for k in ("close_idle_blocked",)
                if any(k in m for m in rounds.values())
            }
            per_server[server] = {
                "rounds": len(rounds),
                "median": medians,
                "ratio": median(ratios),
                "ratio_min": min(ratios) if ratios else None,
                "ratio_max": max(ratios) if ratios else None,
                "spread": spread,
                "flags": flags,
            }
        summary[cell.key] = per_server
    return summary


#: The per-operation server CPU each pair comparison divides, beside the cell's main metric.
CPU_METRIC = "server_cpu_us_per_op"


def _ratio_stats(ratios: list[float]) -> dict[str, float | None]:
    return {
        "median": median(ratios),
        "min": min(ratios) if ratios else None,
        "max": max(ratios) if ratios else None,
    }


def pair_ratios(
    runs: list[dict[str, Any]], cells: list[Cell], pairs: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Same-round ratios a/b for each pair (a, b) and cell where both ran.

    One entry per (cell, pair): ``metric`` (the cell's main metric) and
    ``cpu`` (server CPU per operation) each hold the median, min and max over
    rounds of the per-round ratio, with ``a``/``b`` the medians themselves.
    Only rounds in which both sides completed are paired.
    """
    table = _by_round(runs)
    entries: list[dict[str, Any]] = []
    for cell in cells:
        for a, b in pairs:
            mine, theirs = table.get((cell.key, a), {}), table.get((cell.key, b), {})
            common = sorted(set(mine) & set(theirs))
            if not common:
                continue
            ratios: dict[str, list[float]] = {"metric": [], "cpu": []}
            for number in common:
                for label, metric in (("metric", cell.metric), ("cpu", CPU_METRIC)):
                    x, y = mine[number].get(metric), theirs[number].get(metric)
                    if _numeric(x) and _numeric(y) and y:
                        ratios[label].append(x / y)
            entries.append(
                {
                    "cell": cell.key,
                    "a": a,
                    "b": b,
                    "rounds": len(common),
                    "metric_name": cell.metric,
                    "higher_is_better": cell.higher_is_better,
                    "a_metric": median(mine[n].get(cell.metric) for n in common),
                    "b_metric": median(theirs[n].get(cell.metric) for n in common),
                    "a_cpu": median(mine[n].get(CPU_METRIC) for n in common),
                    "b_cpu": median(theirs[n].get(CPU_METRIC) for n in common),
                    "metric": _ratio_stats(ratios["metric"]),
                    "cpu": _ratio_stats(ratios["cpu"]),
                    "metric_rounds": ratios["metric"],
                    "cpu_rounds": ratios["cpu"],
                }
            )
    return entries
