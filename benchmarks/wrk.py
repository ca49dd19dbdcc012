"""Driving the HTTP workload with wrk, a C load generator that speaks HTTP/1.1.

wrk runs with one thread so it leaves the server a core; its CPU time comes
from wait4()'s rusage, since wrk cannot report its own.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().with_name("wrk_report.lua")
GRACE_S = 15.0


class WrkError(RuntimeError):
    """wrk is missing or a run failed."""


def find() -> str | None:
    """The wrk executable, or None."""
    return shutil.which("wrk")


def version() -> str | None:
    """wrk's version string (it prints it with -v and exits non-zero)."""
    exe = find()
    if exe is None:
        return None
    done = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10, check=False)
    match = re.search(r"wrk\s+(\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "?"


def run(port: int, *, conns: int, duration: float, timeout_s: float = 2.0) -> dict[str, Any]:
    """One wrk run against http://127.0.0.1:port/; returns its JSON line plus CPU time."""
    exe = find()
    if exe is None:
        raise WrkError("wrk is not installed (apt-get install -y wrk)")
    seconds = max(1, round(duration))
    command = [exe, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", f"{round(timeout_s)}s"]
    command += ["-s", str(SCRIPT), f"http://127.0.0.1:{port}/"]
    # The harness reaps no other child while wrk runs, so the change in the
    # children's rusage is wrk's CPU time.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(command, capture_output=True, timeout=seconds + GRACE_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"{' '.join(command)} overran its bound") from exc
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = done.stdout
    err = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise WrkError(f"{' '.join(command)} failed ({done.returncode}): {err}")
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            result["cpu_s"] = cpu_s
            result["elapsed_s"] = result["duration_us"] / 1e6
            return result
    raise WrkError(f"wrk printed no result line: {out[-500:]!r} {err}")
