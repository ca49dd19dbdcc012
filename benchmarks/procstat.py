"""CPU time, memory and thread counts of a server's whole process tree, from /proc.

Why the tree and not the pid: the forking server and the prefork runner do
their work in child processes. CPU is utime+stime of every live process in
the tree plus cutime+cstime (children already reaped), so work done by a
child that exited between two samples is still counted. Memory is PSS, which
splits pages shared between forked processes instead of counting them once
per process as RSS would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")

# Indexes into the fields that follow "(comm)" in /proc/PID/stat (see proc(5)):
# field N of the man page is index N - 3 here.
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME, _THREADS, _RSS = 1, 11, 12, 13, 14, 17, 21


@dataclass(frozen=True)
class TreeSample:
    """One look at a process tree."""

    cpu_s: float
    rss_bytes: int
    pss_bytes: int
    threads: int
    processes: int


def _stat_fields(pid: int) -> list[str] | None:
    """The fields after the command name; None if the process is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, found by walking parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[_PPID]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _pss_bytes(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return 0


def sample_tree(root: int, *, memory: bool = False) -> TreeSample:
    """CPU seconds, memory (only if asked: smaps is slower to read) and threads of the tree."""
    cpu_ticks = rss_pages = threads = processes = pss = 0
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        processes += 1
        cpu_ticks += sum(int(fields[i]) for i in (_UTIME, _STIME, _CUTIME, _CSTIME))
        threads += int(fields[_THREADS])
        rss_pages += int(fields[_RSS])
        if memory:
            pss += _pss_bytes(pid)
    return TreeSample(
        cpu_s=cpu_ticks / CLOCK_TICKS,
        rss_bytes=rss_pages * PAGE_SIZE,
        pss_bytes=pss,
        threads=threads,
        processes=processes,
    )
