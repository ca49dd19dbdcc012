"""Run the third-party suite: build the venvs, run every project's tests on both, compare.

``python3 -m tests.thirdparty [--only NAME ...] [--cache DIR] [--jobs N] [-v]``
from the repository root. Prints the side-by-side table and exits 1 if any test
passes on the stdlib and fails with sockserve (see :mod:`.results`), if a
project cannot be set up, or if sockserve was not really injected; 0 otherwise.

For each project, in this order: the stdlib run, the sockserve run (the same
tests, the same venv, only the switch file differs), then up to two re-runs,
with sockserve, of the tests that regressed. Projects run one after another: their
tests time things and some bind fixed ports. Venv builds run in parallel
(``--jobs``): they wait on the network, not the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .projects import PROJECTS, Project
from .results import ModeResult, ProjectResult, table
from .venvs import BuildError, ProjectEnv, ensure_env

REPO = Path(__file__).resolve().parent.parent.parent
SOCKSERVE_SOURCE = REPO / "src"
DEFAULT_CACHE = REPO / ".thirdparty"
#: Seconds one test may take (pytest-timeout) before it fails and the run goes on;
#: the slowest healthy test (werkzeug's reloader) takes about 4.
TEST_TIMEOUT = 30
#: Times a test that regressed is re-run with sockserve before it counts as ours:
#: a flaky test must fail three times in a row to fail the suite. More than
#: RERUN_AT_MOST regressions are no flake: they are reported without re-runs.
RERUNS = 2
RERUN_AT_MOST = 5
#: Variables of ours that must not reach the projects' interpreters.
_SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "VIRTUAL_ENV")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pytest(
    env: ProjectEnv, project: Project, nodeids: list[str] | None, sockserve: Path | None
) -> ModeResult:
    """One pytest run in the project's venv (sockserve from ``sockserve``, or the stdlib).

    Every process the run leaves behind is killed.
    """
    env.use_sockserve(sockserve)
    with tempfile.TemporaryDirectory(prefix="sockserve-3p-") as scratch:
        report = Path(scratch) / "outcomes.jsonl"
        command = [
            str(env.python), "-m", "pytest",
            "-p", "_sockserve_report", f"--sockserve-report={report}",
            "-p", "no:cacheprovider", "-q", "-rfE", f"--timeout={TEST_TIMEOUT}",
            f"--rootdir={env.src}",
            *project.pytest_args,
            *(nodeids if nodeids is not None else project.tests),
        ]  # fmt: skip
        environ = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        started = time.monotonic()
        # A session of its own, so that a timeout or a straggler (a dev server
        # a test failed to stop) is ended with the whole group.
        process = subprocess.Popen(
            command,
            cwd=env.src,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        timed_out = False
        try:
            output, _ = process.communicate(timeout=project.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process.pid)
            try:
                output, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:  # a process outside the group holds the pipe
                process.kill()
                process.wait()
                output = ""
        finally:
            _kill_group(process.pid)
        result = ModeResult.load(report, process.returncode, time.monotonic() - started, output)
    result.timed_out = timed_out
    # In the stdlib run this must stay 0: it proves the switch was really off.
    result.injected, result.injection_failures = env.injected()
    env.use_sockserve(None)
    return result


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already: nothing left behind


#: Run in the venv with sockserve switched on: what ``http.server`` is built on.
_PROBE = (
    "import http.server, socketserver; "
    "print(socketserver.__name__, http.server.HTTPServer.__mro__[1].__module__, "
    "socketserver.__file__)"
)


def _probe(env: ProjectEnv, source: Path) -> str:
    """What a fresh interpreter of the venv gets as socketserver, with the switch on."""
    env.use_sockserve(source)
    try:
        result = subprocess.run(
            [str(env.python), "-c", _PROBE],
            cwd=env.src,
            env={k: v for k, v in os.environ.items() if k not in _SCRUBBED},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        env.use_sockserve(None)
    return (result.stdout + result.stderr).strip()


def run_project(project: Project, env: ProjectEnv, result: ProjectResult, source: Path) -> None:
    _log(f"[{project.name}] stdlib: {' '.join(project.tests)}")
    result.stdlib = _pytest(env, project, None, sockserve=None)
    result.probe = _probe(env, source)
    _log(f"[{project.name}] sockserve: {result.probe}")
    result.sockserve = _pytest(env, project, None, sockserve=source)
    result.ours = result.regressions()
    for _ in range(RERUNS):
        if not result.ours or len(result.ours) > RERUN_AT_MOST:
            break
        _log(f"[{project.name}] re-running {len(result.ours)} regressed test(s) with sockserve")
        again = _pytest(env, project, result.ours, sockserve=source)
        result.flaky += [n for n in result.ours if again.outcomes.get(n) == "passed"]
        result.ours = [n for n in result.ours if again.outcomes.get(n) != "passed"]
        result.sockserve.output += "\n--- re-run ---\n" + again.output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.thirdparty", description=__doc__)
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this project")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where venvs are kept")
    parser.add_argument("--jobs", type=int, default=3, help="venvs built at once")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every project's output")
    parser.add_argument("--build-only", action="store_true", help="build the venvs, run nothing")
    parser.add_argument(
        "--sockserve-source",
        type=Path,
        default=SOCKSERVE_SOURCE,
        help="the directory sockserve is imported from (default: this tree's src/)",
    )
    args = parser.parse_args(argv)

    names = {p.name for p in PROJECTS}
    unknown = set(args.only or ()) - names
    if unknown:
        parser.error(f"unknown project(s) {sorted(unknown)}; known: {sorted(names)}")
    projects = [p for p in PROJECTS if not args.only or p.name in args.only]
    results = {p.name: ProjectResult(p) for p in projects}
    started = time.monotonic()
    args.cache.mkdir(parents=True, exist_ok=True)

    def build(project: Project) -> ProjectEnv | None:
        began = time.monotonic()
        try:
            return ensure_env(project, args.cache)
        except (BuildError, OSError, subprocess.SubprocessError) as exc:
            results[project.name].setup_error = str(exc)
            return None
        finally:
            results[project.name].setup_seconds = time.monotonic() - began

    _log(f"third-party suite: {len(projects)} project(s), venvs under {args.cache}")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        envs = dict(zip([p.name for p in projects], pool.map(build, projects), strict=True))
    _log(f"venvs ready in {time.monotonic() - started:.0f} s")
    if args.build_only:
        broken = [r for r in results.values() if r.setup_error is not None]
        for result in broken:
            print(f"{result.project.name}: could not be set up: {result.setup_error}")
        return 1 if broken else 0

    for project in projects:
        env = envs[project.name]
        if env is not None:
            run_project(project, env, results[project.name], args.sockserve_source.resolve())

    ordered = [results[p.name] for p in projects]
    print(table(ordered))
    failed = False
    for result in ordered:
        problems = result.problems()
        show = args.verbose or bool(problems)
        if result.flaky:
            print(f"\n{result.project.name}: flaky with sockserve (passed on re-run):")
            print("\n".join(f"  {nodeid}" for nodeid in result.flaky))
        if problems:
            failed = True
            print(f"\n{result.project.name}: " + "; ".join(problems))
            print("\n".join(f"  ours: {nodeid}" for nodeid in result.ours))
        if show and result.sockserve is not None:
            print(f"\n--- {result.project.name} with sockserve (last lines) ---")
            print("\n".join(result.sockserve.output.strip().splitlines()[-40:]))
    elapsed = time.monotonic() - started
    summary = {
        "seconds": round(elapsed, 1),
        "python": sys.version.split()[0],
        "projects": [r.summary() for r in ordered],
    }
    (args.cache / "last-run.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"\nthird-party suite: {'FAILED' if failed else 'ok'} in {elapsed:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
