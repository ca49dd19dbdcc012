"""Smoke test of the hostile-client harness: ``python -m benchmarks.hostile --quick`` runs.

What must hold is that the harness works: every (attack, strategy) cell it was
asked for was measured, the fresh-client probe ran during each attack, the
attackers connected, the server's usage was sampled and its log counted.
Whether the servers survive the attacks is what the harness reports, not
what this test asserts (today several do not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.hostile.catalog import ATTACKS, STRATEGIES, select

REPO = Path(__file__).resolve().parent.parent
QUICK_ATTACKS = ("slowloris-40", "exception-storm")
QUICK_STRATEGIES = ("stdlib-threading", "sockserve-pool")


def _harness(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.hostile", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_names_pick_attacks_and_strategies() -> None:
    attacks, strategies = select(["slowloris", "sockserve-pool"])
    assert [a.name for a in attacks] == ["slowloris-40", "slowloris-200", "slowloris-line-200"]
    assert [s.name for s in strategies] == ["sockserve-pool"]
    assert select(None) == (list(ATTACKS), list(STRATEGIES))
    with pytest.raises(ValueError, match="no-such-attack"):
        select(["slowloris-40", "no-such-attack"])


def test_list_names_every_attack_and_strategy(tmp_path: Path) -> None:
    done = _harness(tmp_path, "--list", timeout=30)
    assert done.returncode == 0, done.stderr
    for name in [a.name for a in ATTACKS] + [s.name for s in STRATEGIES]:
        assert name in done.stdout


@pytest.mark.slow
def test_quick_run_measures_every_cell(tmp_path: Path) -> None:
    results, report = tmp_path / "hostile.json", tmp_path / "hostile.md"
    done = _harness(
        tmp_path,
        "--quick",
        "--only",
        ",".join(QUICK_ATTACKS + QUICK_STRATEGIES),
        "--json",
        str(results),
        "--markdown",
        str(report),
        "--log-dir",
        str(tmp_path / "logs"),
        timeout=90,
    )
    output = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    data = json.loads(results.read_text())
    cells = {(c["attack"], c["strategy"]): c for c in data["cells"]}
    assert set(cells) == {(a, s) for a in QUICK_ATTACKS for s in QUICK_STRATEGIES}, output

    for (attack, strategy), cell in cells.items():
        where = f"{attack} x {strategy}: {cell.get('error')}"
        assert cell["ok"], where
        assert cell["probe_before"]["ok"], where  # the server served before the attack
        assert cell["fresh_client"]["tried"] >= 1, where  # the probe ran during the attack
        assert "ok" in cell["probe_after"], where
        assert cell["usage"]["peak"]["threads"] >= 1, where
        assert cell["usage"]["peak"]["fds"] >= 3, where
        assert "lines" in cell["log"], where
    for strategy in QUICK_STRATEGIES:
        slowloris = cells[("slowloris-40", strategy)]
        assert slowloris["attack_counts"]["connected"] == 40, slowloris["attack_counts"]
        storm = cells[("exception-storm", strategy)]
        assert storm["attack_counts"]["done"] > 0, storm["attack_counts"]
        # Every handler raised: the log counter must have seen the server say so.
        assert storm["log"]["lines"] > 0, storm["log"]
    assert cells[("slowloris-40", "sockserve-pool")]["server_stats"]["accepted"] >= 1

    lines = report.read_text().splitlines()
    for attack in QUICK_ATTACKS:
        assert f"## {attack}" in lines
    for strategy in QUICK_STRATEGIES:
        rows = [line for line in lines if line.startswith(f"| {strategy} |")]
        assert len(rows) == len(QUICK_ATTACKS), rows
