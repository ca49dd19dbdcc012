"""A description of the machine and software a run measured, for the report.

Numbers from different machines are not comparable; the report says which
one produced them, down to the kernel settings that cap listen backlogs.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import wrk
from benchmarks.harness import REPO

SYSCTLS = (
    "net/core/somaxconn",
    "net/ipv4/tcp_max_syn_backlog",
    "net/ipv4/ip_local_port_range",
    "net/ipv4/tcp_tw_reuse",
)


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def sysctl(name: str) -> str | None:
    try:
        return " ".join(Path("/proc/sys", name).read_text().split())
    except OSError:
        return None


def git_revision() -> str | None:
    """The commit measured (with "+dirty" for uncommitted changes), if in a git checkout."""
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if not head or "fatal" in head or " " in head:
        return None
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    return head + ("+dirty" if dirty else "")


def describe(versions: dict[str, str | None]) -> dict[str, Any]:
    """Everything the report's machine section shows."""
    try:
        mpl: str | None = metadata.version("matplotlib")
    except metadata.PackageNotFoundError:
        mpl = None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_gib": memory_total_gib(),
        "kernel": platform.release(),
        "os": os_release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "versions": {**versions, "matplotlib": mpl, "wrk": wrk.version()},
        "cc": _first_line(["cc", "--version"]),
        "sysctl": {name.replace("/", "."): sysctl(name) for name in SYSCTLS},
        "fd_limit": _first_line(["sh", "-c", "ulimit -n"]),
        "git": git_revision(),
    }
