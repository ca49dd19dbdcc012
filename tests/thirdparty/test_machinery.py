"""The third-party suite's own parts, offline: the switch, the outcome file, the verdict.

These run in the default suite (no network): a venv made without pip is
enough to show that the switch reaches every interpreter, subprocesses with
an empty environment included, and that the stdlib mode really is the stdlib.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .projects import PROJECTS, Project
from .results import ModeResult, ProjectResult, table
from .venvs import ProjectEnv, cache_key

SRC = Path(__file__).resolve().parent.parent.parent / "src"
TIMEOUT = 60.0

# A child that starts a grandchild with an empty environment; each prints what
# it imported as socketserver and what http.server's HTTPServer derives from.
_CHILD = """
import subprocess, sys
import http.server, socketserver
print(socketserver.__name__, http.server.HTTPServer.__mro__[1].__module__)
grandchild = "import socketserver; print(socketserver.__name__)"
print(subprocess.run([sys.executable, "-c", grandchild], env={},
                     capture_output=True, text=True, check=True).stdout.strip())
"""


def _make_env(root: Path) -> ProjectEnv:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root / "venv")
    (root / "src").mkdir()
    made = ProjectEnv(root)
    made.install_helpers()
    return made


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> ProjectEnv:
    return _make_env(tmp_path_factory.mktemp("venv-root"))


def _run_child(env: ProjectEnv) -> list[str]:
    result = subprocess.run(
        [str(env.python), "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:2]


def test_the_switch_reaches_every_interpreter(env: ProjectEnv) -> None:
    env.use_sockserve(SRC)
    try:
        assert _run_child(env) == ["sockserve sockserve", "sockserve"]
        assert env.injected() == (2, 0)  # the child and its grandchild
    finally:
        env.use_sockserve(None)


def test_without_the_switch_it_is_the_stdlib(env: ProjectEnv) -> None:
    env.use_sockserve(None)
    assert _run_child(env) == ["socketserver socketserver", "socketserver"]
    assert env.injected() == (0, 0)


def test_a_failed_injection_is_recorded(env: ProjectEnv, tmp_path: Path) -> None:
    env.use_sockserve(tmp_path)  # no sockserve there
    try:
        result = subprocess.run(
            [str(env.python), "-c", "import socketserver; print(socketserver.__name__)"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env={"PATH": "/usr/bin:/bin"},  # no PYTHONPATH of ours to find sockserve through
        )
        assert result.stdout.strip() == "socketserver"  # site.py carried on with the stdlib...
        switched, failed = env.injected()
        # ...but the runner is told (once per site-packages path: venvs may list
        # lib and its lib64 link, and a failed import is retried by the next).
        assert switched == 0 and failed >= 1
    finally:
        env.use_sockserve(None)


def test_the_report_plugin_records_outcomes_as_tests_end(tmp_path: Path) -> None:
    env = _make_env(tmp_path / "root")
    # The venv has no packages of its own: borrow this interpreter's pytest.
    extra = Path(pytest.__file__).resolve().parent.parent
    (env.site_packages / "borrowed.pth").write_text(f"{extra}\n", encoding="utf-8")
    tests = tmp_path / "test_sample.py"
    tests.write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert False\n"
        "@pytest.fixture\n"
        "def broken(): raise RuntimeError\n"
        "def test_error(broken): pass\n"
        "def test_skip(): pytest.skip('no')\n"
        "@pytest.mark.xfail\n"
        "def test_xfail(): assert False\n",
        encoding="utf-8",
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    report = tmp_path / "out.jsonl"
    subprocess.run(
        [str(env.python), "-m", "pytest", "-q", "-p", "_sockserve_report",
         f"--sockserve-report={report}", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    outcomes = ModeResult.load(report, 1, 0.0, "").outcomes
    assert outcomes == {
        "test_sample.py::test_ok": "passed",
        "test_sample.py::test_bad": "failed",
        "test_sample.py::test_error": "error",
        "test_sample.py::test_skip": "skipped",
        "test_sample.py::test_xfail": "xfailed",
    }


def _mode(outcomes: dict[str, str], injected: int = 0) -> ModeResult:
    return ModeResult(outcomes=outcomes, returncode=0, seconds=1.0, output="", injected=injected)


def _result(stdlib: dict[str, str], sockserve: dict[str, str]) -> ProjectResult:
    result = ProjectResult(
        PROJECTS[0], stdlib=_mode(stdlib), sockserve=_mode(sockserve, injected=3)
    )
    result.probe = "sockserve sockserve /somewhere/sockserve/__init__.py"
    return result


def test_a_regression_is_a_test_that_passed_on_the_stdlib_only() -> None:
    result = _result(
        {"a": "passed", "b": "passed", "c": "passed", "d": "failed", "e": "passed"},
        {"a": "passed", "b": "failed", "c": "skipped", "d": "failed"},
    )
    assert result.regressions() == ["b", "c", "e"]  # failed, skipped, never ran
    assert result.theirs() == 1  # d fails on both: the project's, not ours
    result.ours = result.regressions()
    assert result.problems() == ["3 test(s) pass on the stdlib and fail with sockserve"]


def test_a_clean_run_has_no_problem_and_a_row_in_the_table() -> None:
    result = _result({"a": "passed", "b": "skipped"}, {"a": "passed", "b": "skipped"})
    assert result.problems() == []
    row = next(line for line in table([result]).splitlines() if line.startswith("werkzeug"))
    assert row.split("|")[1].split() == ["1", "0", "1"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("no_injection", "sockserve was not injected everywhere"),
        ("stdlib_injected", "the stdlib run had sockserve injected"),
        ("probe", "http.server is not built on sockserve"),
        ("nothing_ran", "no test ran on the stdlib"),
    ],
)
def test_a_run_that_proves_nothing_is_a_problem(change: str, problem: str) -> None:
    result = _result({"a": "passed"}, {"a": "passed"})
    assert result.stdlib is not None and result.sockserve is not None
    if change == "no_injection":
        result.sockserve.injected = 0
    elif change == "stdlib_injected":
        result.stdlib.injected = 1
    elif change == "probe":
        result.probe = "socketserver socketserver /usr/lib/python3/socketserver.py"
    else:
        result.stdlib.outcomes = {}
    assert any(problem in found for found in result.problems())


def test_the_cache_key_follows_the_pins() -> None:
    project = PROJECTS[0]
    moved = Project(**{**vars(project), "requirement": project.requirement + ".post1"})
    assert cache_key(project) == cache_key(project)
    assert cache_key(moved) != cache_key(project)


def test_every_project_is_pinned_and_constrained() -> None:
    for project in PROJECTS:
        assert project.version, project.name
        assert all("==" in req for req in project.test_requirements), project.name
        assert project.constraints.exists(), project.name
        assert json.dumps(project.tests)  # plain strings: pytest arguments
    assert len(PROJECTS) >= 3
    assert sys.version_info >= (3, 11)
