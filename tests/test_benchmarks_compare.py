"""Comparing two revisions of sockserve in one benchmark run (``--compare-rev``).

The slow test runs the suite end to end against HEAD (an A/A comparison: the
numbers are noise, the plumbing is not): the revision is exported, its kinds
run from the export, and the report gets its new/old table. The fast tests
cover the pieces that decide what a comparison says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the benchmark suite is a top-level package beside src/
    sys.path.insert(0, str(REPO))

from benchmarks.catalog import BY_NAME, spec_for, split_name, with_revisions  # noqa: E402
from benchmarks.cells import Cell  # noqa: E402
from benchmarks.comparisons import DEFAULT_VERSUS, parse_versus, verdict, worse  # noqa: E402
from benchmarks.harness import ServerError, check_origin  # noqa: E402
from benchmarks.loadgen import sources_for  # noqa: E402
from benchmarks.runner import Matrix  # noqa: E402
from benchmarks.stats import pair_ratios  # noqa: E402

CELLS = "pingpong-64B-c10,churn-c10"


def _git_head() -> str | None:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.mark.slow
def test_compare_rev_head_runs_both_revisions_and_reports_the_pairs(tmp_path: Path) -> None:
    label = _git_head()
    if label is None:
        pytest.skip("not a git checkout: --compare-rev needs one")
    results, markdown = tmp_path / "results.json", tmp_path / "benchmarks.md"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "sockserve-pool"]
    command += ["--workloads", CELLS, "--compare-rev", "HEAD"]
    command += ["--json", str(results), "--markdown", str(markdown)]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    output = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    data = json.loads(results.read_text())

    (revision,) = data["meta"]["revisions"]
    old = f"sockserve-pool@{revision['label']}"
    assert revision["rev"] == "HEAD" and label.startswith(revision["label"][:7])
    runs = {(r["cell"], r["server"]): r for r in data["runs"]}
    for cell in CELLS.split(","):
        for server in ("sockserve-pool", old):
            run = runs[(cell, server)]
            assert run["ok"], run
            assert run["metrics"]["ops"] > 0 and run["metrics"]["mismatches"] == 0, run

    pairs = {(e["cell"], e["a"], e["b"]): e for e in data["comparisons"]["revisions"]}
    assert set(pairs) == {(cell, "sockserve-pool", old) for cell in CELLS.split(",")}
    for entry in pairs.values():
        assert entry["metric"]["median"] > 0 and entry["rounds"] == 1

    report = markdown.read_text()
    assert "## Revisions compared: new / old" in report
    assert "| `pingpong-64B-c10` (round trips/s) | `sockserve-pool` |" in report


def test_revision_names_keep_the_kind_and_follow_it() -> None:
    assert split_name("sockserve-pool@abc1234") == ("sockserve-pool", "abc1234")
    assert split_name("uvloop-protocol") == ("uvloop-protocol", None)
    spec = spec_for("sockserve-pool@abc1234")
    assert (
        spec.name == "sockserve-pool@abc1234"
        and spec.protocols == BY_NAME["sockserve-pool"].protocols
    )
    names = [s.name for s in with_revisions([BY_NAME["sockserve-pool"], BY_NAME["gevent"]], ["r1"])]
    assert names == ["sockserve-pool", "sockserve-pool@r1", "gevent"]


def test_pairs_swap_order_every_other_round() -> None:
    specs = with_revisions([BY_NAME["sockserve-pool"], BY_NAME["stdlib-sync"]], ["old"])
    matrix = Matrix(
        cells=[],
        servers=specs,
        availability={},
        rounds=2,
        pairs=[("sockserve-pool", "sockserve-pool@old")],
    )
    assert [s.name for s in matrix.order(1)] == [
        "sockserve-pool",
        "sockserve-pool@old",
        "stdlib-sync",
    ]
    assert [s.name for s in matrix.order(2)] == [
        "sockserve-pool@old",
        "sockserve-pool",
        "stdlib-sync",
    ]


def _run(cell: str, server: str, number: int, rate: float, cpu: float) -> dict[str, object]:
    metrics = {"rate": rate, "server_cpu_us_per_op": cpu}
    return {"cell": cell, "server": server, "round": number, "ok": True, "metrics": metrics}


def test_pair_ratios_divide_within_each_round_only() -> None:
    cell = Cell(key="c", workload="pingpong", proto="tcp", title="", metric="rate", unit="")
    runs = [
        _run("c", "new", 1, 100.0, 10.0),
        _run("c", "old", 1, 50.0, 20.0),
        _run("c", "new", 2, 300.0, 10.0),
        _run("c", "old", 2, 300.0, 10.0),
        _run("c", "new", 3, 999.0, 1.0),  # its partner failed: not paired
    ]
    (entry,) = pair_ratios(runs, [cell], [("new", "old")])
    assert entry["rounds"] == 2
    assert entry["metric_rounds"] == [2.0, 1.0] and entry["cpu_rounds"] == [0.5, 1.0]
    assert entry["metric"] == {"median": 1.5, "min": 1.0, "max": 2.0}


def test_a_verdict_needs_every_round_and_a_margin() -> None:
    assert worse([0.9, 0.92, 0.8], higher_is_better=True)
    assert not worse([0.9, 1.01, 0.8], higher_is_better=True)  # one round disagrees
    assert not worse([0.99, 0.98, 0.97], higher_is_better=True)  # within the margin
    assert not worse([0.5, 0.5], higher_is_better=True)  # too few rounds
    assert worse([1.2, 1.1, 1.3], higher_is_better=False)
    entry = {
        "rounds": 3,
        "metric_name": "rate",
        "higher_is_better": True,
        "metric_rounds": [1.0, 1.1, 0.9],
        "cpu_rounds": [1.2, 1.1, 1.3],
    }
    assert verdict(entry) == "**more CPU/op**"


def test_a_revision_server_must_import_that_revision(tmp_path: Path) -> None:
    src = tmp_path / "src"
    check_origin("k@r", str(src / "sockserve" / "__init__.py"), src)
    check_origin("k", "/anywhere/sockserve/__init__.py", None)
    with pytest.raises(ServerError, match="imported sockserve from"):
        check_origin("k@r", str(REPO / "src" / "sockserve" / "__init__.py"), src)
    with pytest.raises(ServerError, match="did not say"):
        check_origin("k@r", None, src)


def test_versus_pairs_default_to_the_async_targets_and_reject_unknown_names() -> None:
    known = set(BY_NAME)
    assert parse_versus(None, known) == list(DEFAULT_VERSUS)
    assert ("sockserve-async", "uvloop-protocol") in DEFAULT_VERSUS
    assert all(a in known and b in known for a, b in DEFAULT_VERSUS)
    assert parse_versus("sockserve-pool/gevent, sockserve-pool@abc/gevent", known) == [
        ("sockserve-pool", "gevent"),
        ("sockserve-pool@abc", "gevent"),
    ]
    with pytest.raises(ValueError, match="unknown"):
        parse_versus("sockserve-pool/nginx", known)
    with pytest.raises(ValueError, match="SERVER/PEER"):
        parse_versus("sockserve-pool", known)


def test_a_cell_with_a_server_list_runs_only_those_kinds_at_any_revision() -> None:
    cell = Cell(
        key="idle-10000",
        workload="idle",
        proto="tcp",
        title="",
        metric="m",
        unit="",
        servers=("sockserve-async",),
    )
    specs = with_revisions([BY_NAME["sockserve-async"], BY_NAME["sockserve-pool"]], ["r"])
    availability = {s.name: {"tcp": None} for s in specs}
    matrix = Matrix(cells=[cell], servers=specs, availability=availability, rounds=1)
    assert [s.name for _n, _c, s in matrix.jobs()] == ["sockserve-async", "sockserve-async@r"]


def test_idle_clients_spread_over_source_addresses_only_when_ports_run_short() -> None:
    assert sources_for(10) == 1
    assert sources_for(10**6) > 1
