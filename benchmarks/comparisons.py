"""The report's pairwise tables: a revision of sockserve against another, a server against a peer.

The headline divides every server by the stdlib baseline; these tables divide
one chosen server by another, measured in the same round, for the questions
the baseline does not answer: "did this refactor make any strategy slower?"
(``--compare-rev``) and "how far is sockserve's async strategy from raw
uvloop?" (the versus pairs). The numbers come from
:func:`benchmarks.stats.pair_ratios`.
"""

from __future__ import annotations

from typing import Any

#: A pair is called worse only when every round agrees and the median is off by more than this.
TOLERANCE = 0.05
#: Fewer rounds than this give no verdict: with two, agreement is a coin toss.
VERDICT_ROUNDS = 3


def fmt_ratio(stats: dict[str, float | None], rounds: int) -> str:
    """``1.02x (0.97-1.05)``: the median, and the per-round range when there are rounds."""
    middle, low, high = stats["median"], stats["min"], stats["max"]
    if middle is None:
        return "-"
    text = f"{middle:.2f}x"
    if rounds > 1 and low is not None and high is not None:
        text += f" ({low:.2f}-{high:.2f})"
    return text


def _value(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} µs"


def worse(ratios: list[float], higher_is_better: bool) -> bool:
    """True when a is worse than b in every round and by more than TOLERANCE at the median."""
    if len(ratios) < VERDICT_ROUNDS:
        return False
    ordered = sorted(ratios)
    middle = ordered[len(ordered) // 2]
    if higher_is_better:
        return all(r < 1.0 for r in ratios) and middle < 1.0 - TOLERANCE
    return all(r > 1.0 for r in ratios) and middle > 1.0 + TOLERANCE


def verdict(entry: dict[str, Any]) -> str:
    """What the revision table says about one pair (a is the new side)."""
    if entry["rounds"] < VERDICT_ROUNDS:
        return f"({entry['rounds']} round(s): no verdict)"
    found = []
    if worse(entry["metric_rounds"], entry["higher_is_better"]):
        found.append("**slower**" if entry["metric_name"] == "rate" else "**worse**")
    if worse(entry["cpu_rounds"], higher_is_better=False):
        found.append("**more CPU/op**")
    return ", ".join(found) or "no worse"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def revisions_section(results: dict[str, Any], units: dict[str, str]) -> list[str]:
    """New (this tree) against old (``--compare-rev``) for every compared pair."""
    entries = results.get("comparisons", {}).get("revisions") or []
    revisions = results["meta"].get("revisions") or []
    if not revisions:
        return []
    rounds = results["meta"]["rounds"]
    current = results.get("machine", {}).get("git") or "this tree"
    olds = "; ".join(f"`{r['label']}` ({r['rev']}: {r['subject']})" for r in revisions)
    lines = [
        "## Revisions compared: new / old",
        "",
        (
            f"new: `KIND`, sockserve from this working tree ({current}); old: `KIND@HASH`, "
            f"sockserve from {olds}. Both run the same benchmark code (servers, handlers, load "
            "generator) from this tree: only the library differs. Each ratio is new/old, the "
            f"median over {rounds} round(s) of the ratio within each round, with the range of "
            "the per-round ratios in brackets; the two sides of a pair run one after the other "
            "and swap order every other round. Main metric above 1.00x and server CPU per "
            "operation below 1.00x favour new (except where lower is better: idle memory, "
            f"shutdown time). Verdict from {VERDICT_ROUNDS} rounds on: worse when every round "
            f"was on the worse side of 1.00x and the median by more than {TOLERANCE:.0%}. "
            "Server CPU is counted in clock ticks (10 ms): short runs of cheap operations "
            "round it coarsely."
        ),
        "",
    ]
    if not entries:
        return [*lines, "No pair completed a run.", ""]
    rows = []
    for e in entries:
        rows.append(
            [
                f"`{e['cell']}` ({units.get(e['cell'], e['metric_name'])})",
                f"`{e['a']}`",
                _value(e["a_metric"]),
                _value(e["b_metric"]),
                fmt_ratio(e["metric"], e["rounds"]),
                _us(e["a_cpu"]),
                _us(e["b_cpu"]),
                fmt_ratio(e["cpu"], e["rounds"]),
                verdict(e),
            ]
        )
    header = [
        "workload",
        "server",
        "new",
        "old",
        "new/old",
        "CPU/op new",
        "CPU/op old",
        "new/old CPU/op",
        "verdict",
    ]
    return [*lines, *_table(header, rows), ""]


#: The pairs the versus table shows unless ``--versus`` names others: where the
#: async strategy stands against hand-written event-loop code (its targets), and
#: what reading a PROXY header costs a connection (with it / without it).
DEFAULT_VERSUS: tuple[tuple[str, str], ...] = (
    ("sockserve-async", "uvloop-protocol"),
    ("sockserve-async", "uvloop-streams"),
    ("sockserve-async", "asyncio-streams"),
    ("sockserve-run-async-1", "uvloop-protocol"),
    ("sockserve-pool-proxy", "sockserve-pool"),
    ("sockserve-async-proxy", "sockserve-async"),
    ("sockserve-pool-metrics", "sockserve-pool"),
    ("sockserve-async-metrics", "sockserve-async"),
)


def parse_versus(text: str | None, known: set[str]) -> list[tuple[str, str]]:
    """``"A/B,C/D"`` -> [(A, B), (C, D)]; None -> the defaults. ValueError names a bad pair."""
    if text is None:
        return list(DEFAULT_VERSUS)
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        a, slash, b = part.partition("/")
        if not slash or not a or not b:
            raise ValueError(f"--versus wants SERVER/PEER pairs, got {part!r}")
        unknown = [n for n in (a, b) if n.split("@", 1)[0] not in known]
        if unknown:
            raise ValueError(f"--versus: unknown server(s) {', '.join(unknown)}")
        pairs.append((a, b))
    return pairs


def versus_section(results: dict[str, Any], units: dict[str, str]) -> list[str]:
    """A against B for each versus pair that both sides ran."""
    entries = results.get("comparisons", {}).get("versus") or []
    if not entries:
        return []
    rounds = results["meta"]["rounds"]
    rows = [
        [
            f"`{e['cell']}` ({units.get(e['cell'], e['metric_name'])})",
            f"`{e['a']}` / `{e['b']}`",
            _value(e["a_metric"]),
            _value(e["b_metric"]),
            fmt_ratio(e["metric"], e["rounds"]),
            _us(e["a_cpu"]),
            _us(e["b_cpu"]),
            fmt_ratio(e["cpu"], e["rounds"]),
        ]
        for e in entries
    ]
    header = ["workload", "A / B", "A", "B", "A/B", "CPU/op A", "CPU/op B", "A/B CPU/op"]
    return [
        "## Versus: chosen pairs",
        "",
        (
            "Ratios of one server to a chosen peer instead of the stdlib (`--versus A/B,...`; "
            "by default the async strategy against hand-written uvloop and asyncio code, and "
            "the PROXY kinds against their plain kinds: what reading a header costs). Each "
            f"is the median over {rounds} round(s) of A/B within a round, the per-round range "
            "in brackets. Main metric: above 1.00x favours A (below, where lower is better: "
            "memory, shutdown time); server CPU per operation: below 1.00x favours A."
        ),
        "",
        *_table(header, rows),
        "",
    ]
