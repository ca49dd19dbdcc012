"""The markdown report (docs/benchmarks.md) built from a run's results.

Everything in it is generated, so a re-run replaces it whole; the method and
caveats are written here once, next to the code that makes them true.
"""

from __future__ import annotations

from typing import Any

from benchmarks.catalog import BASELINE, spec_for
from benchmarks.cells import Cell
from benchmarks.comparisons import revisions_section, versus_section

#: Cells shown side by side in the headline table, when they were run.
HEADLINE = (
    ("pingpong-64B-c1", "echo 64 B x1"),
    ("pingpong-64B-c10", "x10"),
    ("pingpong-64B-c100", "x100"),
    ("pingpong-64B-c1000", "x1000"),
    ("pingpong-16384B-c10", "16 KiB x10"),
    ("pingpong-16384B-c100", "16 KiB x100"),
    ("churn-c10", "churn"),
    ("burst-5000", "burst served"),
    ("burst-200", "burst served"),
    ("udp-64B-c10", "UDP"),
    ("http-c100", "HTTP x100"),
    ("tls-pingpong-64B-c100", "TLS echo x100"),
    ("tls-churn-c10", "TLS new conns"),
)


def fmt_number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def fmt_us(value: float | None) -> str:
    """Microseconds, switching to milliseconds where that reads better."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:,.2f} ms"
    return f"{value:,.0f} µs"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


#: Per-round ratios further apart than this (max / min) get a noise mark.
NOISY_RATIO_RANGE = 1.5


def _noisy(entry: dict[str, Any]) -> bool:
    low, high = entry.get("ratio_min"), entry.get("ratio_max")
    return bool(low and high and high / low > NOISY_RATIO_RANGE)


def _partly_served(entry: dict[str, Any]) -> bool:
    served, conns = entry["median"].get("served"), entry["median"].get("conns")
    return served is not None and conns is not None and served < conns


def fmt_headline(entry: dict[str, Any], workload: str) -> str:
    """A ratio with its marks: * fewer clients served, ~ noisy across rounds."""
    text = fmt_ratio(entry["ratio"])
    if workload != "burst" and _partly_served(entry):
        text += "*"
    if _noisy(entry):
        text += "~"
    return text


def fmt_ratio_range(entry: dict[str, Any]) -> str:
    """The median ratio with the per-round range when there was more than one round."""
    text = fmt_ratio(entry["ratio"])
    low, high = entry.get("ratio_min"), entry.get("ratio_max")
    if entry["rounds"] > 1 and low is not None and high is not None and high != low:
        text += f" ({low:.2f}-{high:.2f})"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _machine_section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    v = m["versions"]
    versions = ", ".join(f"{name} {ver}" for name, ver in v.items() if ver)
    missing = ", ".join(name for name, ver in v.items() if not ver)
    sysctl = ", ".join(f"{k}={val}" for k, val in m["sysctl"].items() if val is not None)
    rows = [
        ["CPUs", f"{m['nproc']} ({m['cpus_usable']} usable), {m['cpu_model']}"],
        ["memory", f"{m['memory_gib']:.1f} GiB" if m.get("memory_gib") else "?"],
        ["OS / kernel", f"{m['os']} / Linux {m['kernel']}"],
        ["Python", m["python"]],
        ["packages", versions + (f" (not installed: {missing})" if missing else "")],
        ["C compiler", m.get("cc") or "?"],
        ["kernel settings", sysctl + f", ulimit -n={m.get('fd_limit')}"],
        ["sockserve revision", m.get("git") or "not a git commit"],
    ]
    tls = results["meta"].get("tls")
    if tls:
        rows.append(
            [
                "TLS",
                f"{tls['key_type']} certificates from a CA made for the run; the client "
                f"negotiated {tls.get('version') or '?'} {tls.get('cipher') or ''} and verified "
                f"`{tls['server_name']}` ({tls.get('client_library') or '?'}); servers: Python's "
                "ssl module (see packages)",
            ]
        )
    return ["## Machine", "", *_table(["", ""], rows), ""]


def _servers_section(results: dict[str, Any]) -> list[str]:
    rows = []
    backlogs = _backlogs(results)
    for name, protos in results["availability"].items():
        spec = spec_for(name)
        status = []
        for proto, reason in protos.items():
            status.append(
                f"{proto}: {'yes' if reason is None else 'not available (' + reason + ')'}"
            )
        what = "<br>".join(
            f"{proto}: {spec.describe(proto)}"
            for proto in ("tcp", "udp", "http", "tls")
            if proto in spec.protocols and spec.describe(proto)
        )
        rows.append([f"`{name}`", what, backlogs.get(name, "-"), "<br>".join(status)])
    return [
        "## Servers",
        "",
        (
            f'Ratios are relative to `{BASELINE}`. "not available" means this sockserve '
            "version or this machine lacks it (optional peers come with "
            "`pip install -e '.[bench]'`)."
        ),
        "",
        *_table(["server", "what runs", "listen backlog", "available"], rows),
        "",
    ]


def _backlogs(results: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for run in results["runs"]:
        backlog = run.get("metrics", {}).get("listen_backlog") if run.get("ok") else None
        if backlog is not None:
            found[run["server"]] = str(backlog)
    return found


def _headline_section(results: dict[str, Any], cells: dict[str, Cell]) -> list[str]:
    summary = results["summary"]
    chosen = [(key, label) for key, label in HEADLINE if summary.get(key)]
    if not chosen:
        return []
    servers = [
        name for name in results["availability"] if any(name in summary[k] for k, _ in chosen)
    ]
    rows = []
    for name in servers:
        row = [f"`{name}`"]
        for key, _label in chosen:
            entry = summary[key].get(name)
            workload = cells[key].workload if key in cells else ""
            row.append(fmt_headline(entry, workload) if entry else "n/a")
        rows.append(row)
    rounds = results["meta"]["rounds"]
    return [
        "## Headline: ratio to the stdlib",
        "",
        (
            f"Each number is the median over {rounds} round(s) of (server / `{BASELINE}`) "
            "for the workload's main metric (round trips/s, connections/s, clients served, "
            "requests/s), with both measured in the same round. Higher is better; 1.00x "
            "is the stdlib. n/a: not run for that server. * fewer clients served than "
            "connected (throughput from fewer, luckier clients; see the served column "
            "below). ~ noisy: the per-round ratios differ by more than "
            f"{NOISY_RATIO_RANGE:g}x (the detail tables show their range)."
        ),
        "",
        *_table(["server", *[label for _key, label in chosen]], rows),
        "",
    ]


def _cell_rows(cell: Cell, entries: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of one workload's detail table."""
    if cell.workload == "shutdown":
        header = [
            "server",
            "shutdown() median",
            "max",
            "ratio",
            "shutdown + server_close, idle client",
        ]
        rows = []
        for name, e in entries.items():
            m = e["median"]
            blocked = e["flags"].get("close_idle_blocked", 0)
            close = (
                f"blocked > {m.get('close_cap_ms', 0) / 1000:g} s ({blocked}/{e['rounds']} rounds)"
                if blocked
                else f"{m.get('close_idle_ms', 0):.1f} ms"
            )
            rows.append(
                [
                    f"`{name}`",
                    f"{m['shutdown_ms']:.1f} ms",
                    f"{m['shutdown_ms_max']:.1f} ms",
                    fmt_ratio_range(e),
                    close,
                ]
            )
        return header, rows
    if cell.workload == "idle":
        header = [
            "server",
            "KiB/conn (PSS)",
            "KiB/conn (RSS)",
            "ratio",
            "served",
            "threads",
            "processes",
            "errors",
        ]
        rows = []
        for name, e in entries.items():
            m = e["median"]
            rows.append(
                [
                    f"`{name}`",
                    fmt_number(m.get("kib_per_conn"), 1),
                    fmt_number(m.get("rss_kib_per_conn"), 1),
                    fmt_ratio_range(e),
                    f"{fmt_number(m.get('served'))}/{fmt_number(m.get('conns'))}",
                    fmt_number(m.get("server_threads")),
                    fmt_number(m.get("server_processes")),
                    fmt_number(m.get("errors")),
                ]
            )
        return header, rows
    header = [
        "server",
        cell.unit,
        "ratio",
        "p50",
        "p99",
        "p99.9",
        "served",
        "server CPU/op",
        "client CPU/op",
        "errors",
        "bad bytes",
        "spread",
    ]
    rows = []
    for name, e in entries.items():
        m = e["median"]
        primary = m.get(cell.metric)
        served = m.get("served")
        served_text = "-" if served is None else f"{served:,.0f}/{m.get('conns', 0):,.0f}"
        rows.append(
            [
                f"`{name}`",
                fmt_number(primary),
                fmt_ratio_range(e),
                fmt_us(m.get("p50_us")),
                fmt_us(m.get("p99_us")),
                fmt_us(m.get("p999_us")),
                served_text,
                fmt_us(m.get("server_cpu_us_per_op")),
                fmt_us(m.get("client_cpu_us_per_op")),
                fmt_number(m.get("errors")),
                fmt_number(m.get("mismatches")),
                "-" if e["spread"] is None else f"{e['spread'] * 100:.0f}%",
            ]
        )
    return header, rows


def _details_section(
    results: dict[str, Any], cells: dict[str, Cell], plots: dict[str, str]
) -> list[str]:
    lines = ["## Results per workload", ""]
    shown_plots: set[str] = set()
    for key, cell in cells.items():
        entries = results["summary"].get(key)
        if not entries:
            continue
        lines += [
            f"### {cell.title}",
            "",
            (
                f"`{key}`; main metric: {cell.unit} "
                f"({'higher' if cell.higher_is_better else 'lower'} is better)."
            ),
            "",
        ]
        header, rows = _cell_rows(cell, entries)
        lines += [*_table(header, rows), ""]
        for plot_key, path in plots.items():
            if plot_key.startswith(cell.workload) and plot_key not in shown_plots:
                lines += [f"![{plot_key}]({path})", ""]
                shown_plots.add(plot_key)
    unshown = [k for k in plots if k not in shown_plots]
    if unshown:
        lines += ["### More plots", ""] + [f"![{k}]({plots[k]})\n" for k in unshown]
    return lines


def _loadgen_section(results: dict[str, Any]) -> list[str]:
    """Did the client cost less CPU per operation than the server it drove?"""
    over: list[str] = []
    near: list[str] = []
    checked = 0
    for key, entries in results["summary"].items():
        for name, entry in entries.items():
            m = entry["median"]
            server, client = m.get("server_cpu_us_per_op"), m.get("client_cpu_us_per_op")
            if server is None or client is None:
                continue
            checked += 1
            text = f"`{key}` / `{name}`: client {client:.1f} µs, server {server:.1f} µs"
            if client >= server:
                over.append(text)
            elif client >= 0.8 * server:
                near.append(text)
    if not checked:
        return []
    lines = [
        "## Load generator check",
        "",
        (
            f"The client (loadgen, or wrk for HTTP) must cost less CPU per operation than the "
            f"server it drives. Of {checked} (workload, server) medians it cost more in "
            f"{len(over)} and 80-100% of the server in {len(near)}. Nearly all of the "
            "client's time is kernel time: on loopback the sender's system call also runs "
            "the receiver's TCP input, so a server whose own work per message is small (C "
            "event loops, or a thread blocked in recv/sendall) pays about what the client "
            "pays, and both cores are busy: such results are bounded by this 2-core machine "
            "as much as by the server."
        ),
        "",
    ]
    for title, items in (("client cost more than the server", over), ("80-100%", near)):
        if items:
            lines += [f"<details><summary>{title} ({len(items)})</summary>", ""]
            lines += [*[f"* {item}" for item in items], "", "</details>", ""]
    return lines


def _problems_section(results: dict[str, Any]) -> list[str]:
    failed = [r for r in results["runs"] if not r.get("ok") and r.get("error")]
    if not failed:
        return []
    rows = [
        [str(r["round"]), r["cell"], f"`{r['server']}`", r["error"][:200].replace("|", "/")]
        for r in failed
    ]
    return ["## Failed runs", "", *_table(["round", "cell", "server", "error"], rows), ""]


METHOD = """\
## Method

* **One command, one machine, one run.** Every server runs in its own
  subprocess (`benchmarks/servers.py --kind NAME`), started fresh for each
  measurement; it binds 127.0.0.1 port 0 and announces its port on stdout.
* **Interleaved rounds.** Within a round each workload is run against every
  server before the next workload starts (A B C, A B C, ...); ratios pair each
  server with the baseline from the same round and the report shows the
  median over rounds. *spread* is (max - min) / median of the main metric
  across rounds: above ~20% treat differences of that size as noise.
* **Load generator.** `benchmarks/loadgen.c`, one thread, epoll, non-blocking
  sockets, built with the system `cc -O2`. It verifies every echoed byte
  ("bad bytes" must be 0) and records each round trip in a log-linear
  histogram (< 1% bucket error). "client CPU/op" is its own CPU time per
  operation (getrusage): it must stay well below "server CPU/op", or the
  client, not the server, would be the bottleneck on two cores.
* **Server CPU** is utime+stime of the server's whole process tree (forked
  children and prefork workers included) from /proc before and after the
  load, divided by the operations completed. Clock-tick resolution (10 ms).
* **Served** counts the clients that completed at least one round trip
  within the run: a server that accepts only some connections (a full
  listen backlog, a bounded pool, `max_children`) shows it here, not only in
  throughput.
* **Ping-pong**: N connections each send a message, wait for the whole echo,
  repeat; connection setup is inside the measured window. **Churn**: 10
  concurrent clients connect, do one 64 B round trip and close.
  **Burst**: all connects issued at once; the clock runs from each client's
  connect. **Idle**: connections do one round trip (proof that the server
  took them) and then stay open, opened at most 100 at a time (asyncio's
  listen backlog, so no SYN waits for a retry); memory is the change in the
  tree's PSS (and RSS) divided by the clients served, kernel socket buffers
  not included. The 10,000-connection cell runs the event loops and the
  thread-per-connection servers only (a bounded pool or a process per
  connection cannot hold them by design), within 30 s; where they would
  take more than half of the ephemeral port range, the client spreads them
  over several 127.0.0.x source addresses.
  **UDP**: N clients each with one datagram outstanding (a ping-pong, not a
  flood); a datagram unanswered within 200 ms counts as lost and the client
  sends the next one.
  **Shutdown**: in-process, `serve_forever()` in a thread, `shutdown()`
  called at offsets spread over the stdlib's 0.5 s poll interval; then
  `shutdown()` + `server_close()` with an idle client connected, capped at
  2 s. **HTTP**: `wrk -t1` against a `BaseHTTPRequestHandler` returning a
  small fixed body with Content-Length (HTTP/1.1 keep-alive), request
  logging silenced.
* Handlers are each framework's idiomatic echo: `BaseRequestHandler` with a
  `recv`/`sendall` loop, asyncio streams (`read`/`write`/`drain`), asyncio
  `Protocol.data_received` → `transport.write`, gevent `StreamServer` with a
  `recv`/`sendall` loop. Backlogs are each API's default unless the server's
  name says otherwise.
* **TLS**: the load generator's TLS mode (OpenSSL, `benchmarks/loadgen_tls.c`)
  verifies each server's certificate against a CA made for the run (key
  type `--tls-key`, RSA-2048 by default: with ECDSA the client's two
  signature checks per handshake cost more than the server's one signature,
  and the client would be measured). Echo: N connections, each set up with
  a full handshake before the clock starts (and before both CPU samples),
  then 64 B round trips. New connections: 10 at a time,
  connect, full handshake (no session resumption), one 64 B round trip,
  close_notify, close; the latency counts from connect. Servers run the
  ssl module's defaults (TLS 1.3, two session tickets per connection). The
  stdlib peer wraps its listening socket, as users do: its handshakes run
  in `accept()`, one at a time, and with Nagle's algorithm on the first
  echo after the session tickets waits for the client's delayed ACK.
* **Pairs.** The versus table divides one server by a chosen peer, the
  revisions table a sockserve kind by the same kind with the library from
  another git revision (`--compare-rev`); both use same-round ratios, like
  the headline.
"""


def render(results: dict[str, Any], cells: list[Cell], plots: dict[str, str]) -> str:
    """The whole markdown document."""
    meta = results["meta"]
    by_key = {cell.key: cell for cell in cells}
    lines = [
        "# sockserve benchmarks",
        "",
        (
            f"Generated by `{meta['command']}` on {meta['started']} "
            f"({meta['elapsed_s'] / 60:.1f} min, {meta['rounds']} round(s), "
            f"{meta['duration_s']:g} s per timed run). Do not edit by hand: re-run to update."
        ),
        "",
        (
            "What the profiles of these workloads showed, and what was changed because of "
            "them, is written up by hand in [performance.md](performance.md)."
        ),
        "",
        "## How to run",
        "",
        "```sh",
        "apt-get install -y gcc libssl-dev openssl wrk   # load generator, TLS, HTTP",
        "pip install -e '.[bench]'           # uvloop, gevent, matplotlib (peers and plots)",
        "python -m benchmarks                # full run (~25 min): writes this page",
        "python -m benchmarks --quick        # smoke run, < 1 min, into benchmarks/.build/",
        "python -m benchmarks --only sockserve-threading,asyncio-protocol --workloads pingpong",
        "python -m benchmarks --list         # servers, workloads and what is available here",
        "```",
        "",
        (
            "Other options: `--rounds N`, `--duration S`, `--json PATH`, `--markdown PATH`, "
            "`--plots-dir DIR`, `--no-plots`, `--tls-key rsa2048|ecdsa-p256` (the TLS "
            "certificates), `--versus A/B,...` (the versus table's pairs). The baseline server "
            "is always added to `--only`."
        ),
        "",
        (
            "To show that a change made no strategy slower, compare two revisions of sockserve "
            "in one run: `--compare-rev REV` also runs every selected sockserve kind with the "
            "library from git revision REV (as `KIND@HASH`) and adds a new/old table; "
            "`--compare-rev HEAD` on a clean tree measures the noise floor. For example: "
            "`python -m benchmarks --only sockserve-pool,sockserve-threading,sockserve-async "
            "--workloads pingpong-64B-c10,pingpong-64B-c100,churn-c10 --rounds 5 "
            "--compare-rev HEAD~1` (results under `benchmarks/.build/compare/`)."
        ),
        "",
    ]
    units = {cell.key: cell.unit for cell in cells}
    lines += _machine_section(results)
    lines += revisions_section(results, units)
    lines += _headline_section(results, by_key)
    lines += versus_section(results, units)
    lines += _servers_section(results)
    lines += _details_section(results, by_key, plots)
    lines += _loadgen_section(results)
    lines += _problems_section(results)
    lines += [METHOD]
    return "\n".join(lines).rstrip() + "\n"
