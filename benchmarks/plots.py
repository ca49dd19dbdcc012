"""PNG plots of a run's medians (matplotlib, Agg backend: no display needed).

Each server keeps one colour across all plots, grouped by family (sockserve
blues, stdlib oranges, asyncio greens, uvloop purples, gevent red), so a
reader can follow one server from chart to chart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.catalog import SERVERS

plt: Any
try:  # optional: plots are skipped without it
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: render to files, never to a display
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

_FAMILY_COLOURS = {
    "sockserve": ["#08306b", "#2171b5", "#4292c6", "#6baed6", "#9ecae1", "#c6dbef"],
    "stdlib": ["#a63603", "#e6550d", "#fd8d3c"],
    "asyncio": ["#006d2c", "#41ab5d"],
    "uvloop": ["#54278f", "#9e9ac8"],
    "gevent": ["#cb181d"],
}


def colours() -> dict[str, str]:
    """server name -> colour, stable across plots and runs."""
    used: dict[str, int] = {}
    result = {}
    for spec in SERVERS:
        palette = _FAMILY_COLOURS.get(spec.family, ["#636363"])
        index = used.get(spec.family, 0)
        result[spec.name] = palette[index % len(palette)]
        used[spec.family] = index + 1
    return result


def _value(summary: dict[str, Any], key: str, server: str, metric: str) -> float | None:
    entry = summary.get(key, {}).get(server)
    if not entry:
        return None
    value = entry["median"].get(metric)
    return None if value is None else float(value)


def _partly_served(summary: dict[str, Any], key: str, server: str) -> bool:
    """True when fewer clients were served than connected: its throughput flatters it."""
    entry = summary.get(key, {}).get(server)
    if not entry:
        return False
    served, conns = entry["median"].get("served"), entry["median"].get("conns")
    return served is not None and conns is not None and served < conns


def _grouped_bars(
    ax: Any,
    *,
    summary: dict[str, Any],
    servers: list[str],
    groups: list[tuple[str, str]],
    metric: str,
) -> None:
    """Bars per server within each group (group = one cell); hatched if partly served."""
    palette = colours()
    present = [
        s for s in servers if any(_value(summary, k, s, metric) is not None for k, _ in groups)
    ]
    width = 0.8 / max(1, len(present))
    for i, server in enumerate(present):
        xs, ys, hatches = [], [], []
        for g, (key, _label) in enumerate(groups):
            value = _value(summary, key, server, metric)
            if value is not None:
                xs.append(g + i * width - 0.4 + width / 2)
                ys.append(value)
                hatches.append("///" if _partly_served(summary, key, server) else "")
        bars = ax.bar(xs, ys, width=width, color=palette.get(server), label=server)
        for bar, hatch in zip(bars, hatches, strict=True):
            if hatch:
                bar.set_hatch(hatch)
                bar.set_edgecolor("white")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([label for _key, label in groups])
    ax.grid(axis="y", alpha=0.3)


def make_all(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write every plot the results have data for; returns plot key -> file."""
    if plt is None:
        raise ImportError("matplotlib is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = results["summary"]
    servers = list(results["availability"])
    written: dict[str, Path] = {}

    def conn_groups(size: int) -> list[tuple[str, str]]:
        keys = [(f"pingpong-{size}B-c{n}", f"{n} conn") for n in (1, 10, 100, 1000)]
        return [(k, label) for k, label in keys if k in summary]

    def has_data(groups: list[tuple[str, str]], metric: str) -> bool:
        return any(_value(summary, k, s, metric) is not None for k, _ in groups for s in servers)

    def figure(key: str, panels: list[tuple[str, list[tuple[str, str]], str, str, bool]]) -> None:
        panels = [p for p in panels if p[1] and has_data(p[1], p[2])]
        if not panels:
            return
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
        labels: dict[str, Any] = {}
        for ax, (title, groups, metric, ylabel, log) in zip(axes[0], panels, strict=True):
            _grouped_bars(ax, summary=summary, servers=servers, groups=groups, metric=metric)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labels.setdefault(label, handle)
        fig.legend(
            list(labels.values()),
            list(labels),
            loc="upper center",
            ncol=min(5, max(1, len(labels))),
            fontsize=8,
            bbox_to_anchor=(0.5, 1.0),
        )
        path = out_dir / f"{key}.png"
        fig.tight_layout(rect=(0, 0, 1, 0.86))
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written[key] = path

    figure(
        "pingpong-throughput",
        [
            (
                "TCP echo, 64 B (hatched: some clients unserved)",
                conn_groups(64),
                "rate",
                "round trips/s",
                False,
            ),
            (
                "TCP echo, 16 KiB (hatched: some clients unserved)",
                conn_groups(16384),
                "rate",
                "round trips/s",
                False,
            ),
        ],
    )
    figure(
        "pingpong-latency",
        [
            ("p99 latency, 64 B", conn_groups(64), "p99_us", "µs (log)", True),
            ("p99 latency, 16 KiB", conn_groups(16384), "p99_us", "µs (log)", True),
        ],
    )
    figure(
        "pingpong-cpu",
        [
            (
                "server CPU per round trip, 64 B",
                conn_groups(64),
                "server_cpu_us_per_op",
                "µs",
                False,
            ),
            (
                "load generator CPU per round trip, 64 B",
                conn_groups(64),
                "client_cpu_us_per_op",
                "µs",
                False,
            ),
        ],
    )
    burst = [k for k in summary if k.startswith("burst-")]
    most = [k for k in summary if k.startswith("pingpong-64B-c")]
    figure(
        "burst-served",
        [
            (
                "clients served, burst",
                [(k, k) for k in burst],
                "served_fraction",
                "fraction",
                False,
            ),
            (
                "clients served, ping-pong (most connections)",
                [(most[-1], most[-1])] if most else [],
                "served",
                "clients",
                False,
            ),
        ],
    )
    figure(
        "churn-udp",
        [
            (
                "connection churn",
                [(k, k) for k in summary if k.startswith("churn-")],
                "rate",
                "connections/s",
                False,
            ),
            (
                "UDP echo",
                [(k, k) for k in summary if k.startswith("udp-")],
                "rate",
                "round trips/s",
                False,
            ),
        ],
    )
    idle = [(k, k) for k in summary if k.startswith("idle-")]
    figure(
        "idle-memory",
        [
            ("memory per idle connection (PSS)", idle, "kib_per_conn", "KiB (log)", True),
            ("server threads while holding them", idle, "server_threads", "threads", False),
        ],
    )
    figure(
        "shutdown",
        [
            (
                "shutdown() latency (median)",
                [("shutdown", "shutdown")],
                "shutdown_ms",
                "ms (log)",
                True,
            ),
        ],
    )
    figure(
        "http",
        [
            (
                "HTTP keep-alive, wrk",
                [(k, k) for k in summary if k.startswith("http-")],
                "rate",
                "requests/s",
                False,
            ),
        ],
    )
    return written
