"""The third-party suite under pytest: ``python3 -m pytest -m thirdparty`` (see :mod:`.run`).

Deselected from the default run (it needs PyPI and a couple of minutes);
``.ci/run`` runs it on its own line. The venvs are built first, all at once,
then each project is one test, so a regression names its project (and no test
comes near the suite's 110 s faulthandler dump).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .projects import PROJECTS

REPO = Path(__file__).resolve().parent.parent.parent
#: Bounds for one subprocess: a cold build of every venv (about a minute), and one
#: project's runs: under a minute when healthy, longer when tests hang to their
#: timeouts and are re-run (a failure then, reported with its table).
BUILD_TIMEOUT = 300.0
PROJECT_TIMEOUT = 900.0

pytestmark = pytest.mark.thirdparty


def _runner(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # From tests/ as "thirdparty", a regular package found first on sys.path:
    # "tests.thirdparty" would lose to any installed top-level "tests" package.
    return subprocess.run(
        [sys.executable, "-m", "thirdparty", *args],
        cwd=REPO / "tests",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_venvs_build_from_the_pinned_sdists() -> None:
    """First, and all at once (the runner builds them in parallel; a project run alone
    builds its own), so that no single test below carries the whole build."""
    result = _runner("--build-only", timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(BUILD_TIMEOUT + PROJECT_TIMEOUT)
@pytest.mark.parametrize("project", [p.name for p in PROJECTS])
def test_project_passes_with_sockserve_as_on_the_stdlib(project: str) -> None:
    result = _runner("--only", project, timeout=PROJECT_TIMEOUT)
    print(result.stdout)  # the table, for -rA and for the failure report
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    expected = next(p for p in PROJECTS if p.name == project)
    row = f"{expected.distribution} {expected.version}"
    assert any(line.startswith(row) for line in result.stdout.splitlines()), result.stdout
