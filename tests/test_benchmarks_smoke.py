"""Smoke test of the benchmark suite: ``python -m benchmarks --quick`` must run end to end.

No performance number is asserted (CI machines vary too much); what must hold
is that every server in the quick set ran every quick workload, completed
round trips, and echoed every byte correctly. The quick set needs only the
stdlib, asyncio and sockserve, plus a C compiler and OpenSSL's headers for the
load generator (its TLS mode) and the openssl command (the TLS workloads'
certificates): without a program the test skips, except in CI, where it fails
(``helpers.programs``); missing headers fail with the package to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import processes
from helpers.programs import require_program

QUICK_SERVERS = ("sockserve-threading", "stdlib-threading-somaxconn", "asyncio-protocol")
QUICK_WORKLOADS = {"pingpong", "churn", "burst", "idle", "udp", "shutdown", "tls"}
#: Workloads whose main count is round trips (or connections) completed.
COUNTED = {"pingpong", "churn", "burst", "idle", "udp", "tls"}
#: The quick servers with a TLS setup in the suite.
TLS_SERVERS = {"stdlib-threading-somaxconn", "asyncio-protocol"}


def _quick_run(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    results = tmp_path / "results.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--only",
        ",".join(QUICK_SERVERS),
        "--json",
        str(results),
        "--markdown",
        str(tmp_path / "benchmarks.md"),
    ]
    done = processes.run(command, cwd=processes.REPO, timeout=100)
    data = json.loads(results.read_text()) if results.exists() else {}
    return done, data


@pytest.mark.slow
def test_quick_benchmark_runs_every_server_and_verifies_every_byte(tmp_path: Path) -> None:
    compiler = require_program(os.environ.get("CC", "cc"), "apt-get install gcc")
    require_program("openssl", "apt-get install openssl")
    headers = subprocess.run(
        [compiler, "-E", "-x", "c", "-o", os.devnull, "-"],
        input="#include <openssl/ssl.h>\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert headers.returncode == 0, (
        "the load generator's TLS mode needs OpenSSL's headers: apt-get install -y libssl-dev"
    )
    done, data = _quick_run(tmp_path)
    output = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    assert data, f"no results JSON written\n{output}"

    assert set(data["availability"]) == set(QUICK_SERVERS), data["availability"]
    for server in QUICK_SERVERS:
        assert data["availability"][server]["tcp"] is None, (server, data["availability"][server])

    runs = data["runs"]
    assert not [r for r in runs if not r.get("ok")], [r for r in runs if not r.get("ok")]
    workloads = {cell["key"]: cell["workload"] for cell in data["cells"]}
    assert set(workloads.values()) == QUICK_WORKLOADS

    for server in QUICK_SERVERS:
        mine = [r for r in runs if r["server"] == server]
        ran = {workloads[r["cell"]] for r in mine}
        expected = {"pingpong", "churn", "burst", "idle"}
        if server != "asyncio-protocol":
            expected.add("shutdown")  # socketserver API only
        expected.add("udp")
        if server in TLS_SERVERS:
            expected.add("tls")
        assert expected <= ran, (server, sorted(ran))
        for run in mine:
            metrics = run["metrics"]
            assert metrics["mismatches"] == 0, (server, run["cell"], metrics)
            if workloads[run["cell"]] in COUNTED:
                assert metrics["ops"] > 0, (server, run["cell"], metrics)
                assert metrics["served"] > 0, (server, run["cell"], metrics)
            if workloads[run["cell"]] == "tls":
                assert metrics["tls_handshakes"] > 0, (server, run["cell"], metrics)
                assert metrics["tls_failures"] == 0, (server, run["cell"], metrics)
        pingpong = [r for r in mine if workloads[r["cell"]] == "pingpong"]
        assert pingpong and all(r["metrics"]["ops"] > 0 for r in pingpong), server

    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Headline" in report and "stdlib-threading-somaxconn" in report
