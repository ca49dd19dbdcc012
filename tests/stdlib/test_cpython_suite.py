"""CPython's own ``test_socketserver``, run against sockserve by ``run_cpython_suite.py``.

Under the interpreter running pytest (where the ``test`` package must be
importable: its absence is a failure, not a skip) and under every pyenv
3.12 and 3.13 found on this machine.
"""

from __future__ import annotations

import glob
import re
import sys
from pathlib import Path

import pytest

from helpers.processes import run

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "run_cpython_suite.py"
TIMEOUT = 100.0

OTHER_INTERPRETERS = sorted(
    path
    for pattern in (
        "/root/.pyenv/versions/3.12*/bin/python",
        "/root/.pyenv/versions/3.13*/bin/python",
    )
    for path in glob.glob(pattern)
)

# The one test the runner leaves out (it checks __module__ == "socketserver").
EXCLUDED = 1

_COUNT_TESTS = (
    "import unittest; from test import test_socketserver as m; "
    "print(unittest.defaultTestLoader.loadTestsFromModule(m).countTestCases())"
)


def _expected_count(python: str) -> int:
    """How many tests the stdlib module has under ``python``, minus the excluded one."""
    result = run([python, "-c", _COUNT_TESTS], timeout=TIMEOUT, cwd=HERE)
    assert result.returncode == 0, f"{python}: test.test_socketserver:\n{result.stderr}"
    return int(result.stdout) - EXCLUDED


def _run_suite(python: str) -> None:
    expected = _expected_count(python)
    result = run([python, str(RUNNER)], timeout=TIMEOUT, cwd=HERE)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    ran = re.search(r"^Ran (\d+) tests? in ", output, re.MULTILINE)
    assert ran is not None, output
    assert int(ran.group(1)) == expected, output
    assert expected >= 25  # the suite really is the stdlib's, not an empty module
    assert re.search(r"^OK$", output, re.MULTILINE), output  # no skips, no expected failures
    assert "<class 'sockserve." in output  # the servers under test were sockserve's


def test_cpython_suite_passes_under_this_interpreter() -> None:
    _run_suite(sys.executable)


@pytest.mark.parametrize("python", OTHER_INTERPRETERS)
def test_cpython_suite_passes_under_other_interpreters(python: str) -> None:
    _run_suite(python)
