"""A pytest plugin that records each test's outcome as it ends: one JSON line per report.

Copied into the venvs of the third-party suite and loaded with
``-p _sockserve_report --sockserve-report=PATH``. The runner compares a
project's two runs (stdlib, sockserve) test by test and re-runs by node id what
regressed (junit XML loses the node ids of class-based tests). Lines are
written and flushed as tests end, so a run stopped at its time limit still
tells what it had done.

Each line is ``[nodeid, outcome]``; a later line for the same test wins.
Outcomes: ``passed``, ``failed`` (the test body), ``error`` (setup, teardown or
collection), ``skipped``, ``xfailed``, ``xpassed``.
"""

from __future__ import annotations

import json
from typing import IO, Any

_out: IO[str] | None = None
_errored: set[str] = set()


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--sockserve-report", default=None, help="append outcomes to this file")


def pytest_configure(config: Any) -> None:
    global _out
    path = config.getoption("--sockserve-report")
    if path:
        _out = open(path, "a", encoding="utf-8")  # open for the session


def _record(nodeid: str, outcome: str) -> None:
    if _out is not None:
        _out.write(json.dumps([nodeid, outcome]) + "\n")
        _out.flush()


def pytest_runtest_logreport(report: Any) -> None:
    nodeid = report.nodeid
    if hasattr(report, "wasxfail"):
        _record(nodeid, "xfailed" if report.skipped else "xpassed")
    elif report.failed and report.when != "call":
        _errored.add(nodeid)
        _record(nodeid, "error")
    elif report.when == "call" and nodeid not in _errored:
        _record(nodeid, report.outcome)
    elif report.skipped:
        _record(nodeid, "skipped")


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _record(f"{report.nodeid} (collection)", "error")


def pytest_unconfigure(config: Any) -> None:
    global _out
    if _out is not None:
        _out.close()
        _out = None
