"""Outcomes of a project's tests in the two modes, compared test by test, and the table.

A test is *ours* when it passed on the stdlib and did not pass with sockserve
(failed, errored, was skipped or never ran), and again in each re-run; one
that regressed and then passed on a re-run is reported as flaky, not hidden. A
test that fails on the stdlib is *theirs*, whatever sockserve does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .projects import Project

FAILING = ("failed", "error")


@dataclass
class ModeResult:
    """One pytest run of one project in one mode."""

    outcomes: dict[str, str]
    returncode: int
    seconds: float
    output: str
    timed_out: bool = False
    #: Interpreters that switched to sockserve (sockserve mode), and that failed to.
    injected: int = 0
    injection_failures: int = 0

    def count(self, *kinds: str) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome in kinds)

    @classmethod
    def load(cls, report: Path, returncode: int, seconds: float, output: str) -> ModeResult:
        outcomes: dict[str, str] = {}
        if report.exists():
            for line in report.read_text(encoding="utf-8").splitlines():
                try:
                    nodeid, outcome = json.loads(line)
                except ValueError:
                    continue  # the last line of a run killed mid-write
                outcomes[nodeid] = outcome
        return cls(outcomes=outcomes, returncode=returncode, seconds=seconds, output=output)


@dataclass
class ProjectResult:
    project: Project
    setup_seconds: float = 0.0
    setup_error: str | None = None
    stdlib: ModeResult | None = None
    sockserve: ModeResult | None = None
    #: Passed on the stdlib, not with sockserve, and not on the re-runs either.
    ours: list[str] = field(default_factory=list)
    #: Regressed, then passed when re-run.
    flaky: list[str] = field(default_factory=list)
    #: What a new interpreter of the venv imported as socketserver, with the switch on.
    probe: str = ""

    def regressions(self) -> list[str]:
        """Tests that passed on the stdlib and did not pass with sockserve (before any re-run)."""
        if self.stdlib is None or self.sockserve is None:
            return []
        return sorted(
            nodeid
            for nodeid, outcome in self.stdlib.outcomes.items()
            if outcome == "passed" and self.sockserve.outcomes.get(nodeid) != "passed"
        )

    def theirs(self) -> int:
        """Tests that fail on the stdlib: the project's own failures here, not ours."""
        return 0 if self.stdlib is None else self.stdlib.count(*FAILING)

    def problems(self) -> list[str]:
        """Why this project makes the run fail; empty when it does not."""
        if self.setup_error is not None:
            return [f"could not be set up: {self.setup_error}"]
        found = []
        if self.stdlib is None or self.sockserve is None:
            return ["did not run in both modes"]
        if not self.stdlib.outcomes:
            found.append("no test ran on the stdlib (collection failed?)")
        if not self.probe.startswith("sockserve sockserve "):
            found.append(f"http.server is not built on sockserve in the venv: {self.probe!r}")
        if self.sockserve.injected == 0 or self.sockserve.injection_failures:
            found.append(
                f"sockserve was not injected everywhere ({self.sockserve.injected} "
                f"interpreters switched, {self.sockserve.injection_failures} failed to)"
            )
        if self.stdlib.injected:
            found.append("the stdlib run had sockserve injected")
        if self.ours:
            found.append(f"{len(self.ours)} test(s) pass on the stdlib and fail with sockserve")
        return found

    def summary(self) -> dict[str, object]:
        def mode(result: ModeResult | None) -> dict[str, object] | None:
            if result is None:
                return None
            data = asdict(result)
            del data["output"], data["outcomes"]
            data.update(
                passed=result.count("passed"),
                failed=result.count(*FAILING),
                skipped=result.count("skipped", "xfailed", "xpassed"),
            )
            return data

        return {
            "project": self.project.requirement,
            "tests": list(self.project.tests),
            "setup_seconds": round(self.setup_seconds, 1),
            "setup_error": self.setup_error,
            "stdlib": mode(self.stdlib),
            "sockserve": mode(self.sockserve),
            "probe": self.probe,
            "ours": self.ours,
            "flaky": self.flaky,
            "theirs": self.theirs(),
        }


def _cells(result: ModeResult | None) -> str:
    if result is None:
        return f"{'-':>5} {'-':>5} {'-':>5}"
    failed = result.count(*FAILING)
    skipped = result.count("skipped", "xfailed", "xpassed")
    mark = "!" if result.timed_out else " "
    return f"{result.count('passed'):>5} {failed:>5} {skipped:>4}{mark}"


def table(results: list[ProjectResult]) -> str:
    """The side-by-side table: counts per project and mode, then ours / theirs."""
    head = (
        f"{'project':<28} {'tests':>5} | {'stdlib':^17} | {'sockserve':^17} | "
        f"{'ours':>4} {'theirs':>6} {'flaky':>5} {'interp':>6} {'time':>6}"
    )
    counts = f"{'pass':>5} {'fail':>5} {'skip':>5}"
    sub = f"{'':<28} {'':>5} | {counts} | {counts} |"
    lines = [head, sub, "-" * len(head)]
    for result in results:
        name = f"{result.project.distribution} {result.project.version}"
        total = len(result.stdlib.outcomes) if result.stdlib else 0
        seconds = sum(r.seconds for r in (result.stdlib, result.sockserve) if r is not None)
        interp = result.sockserve.injected if result.sockserve else 0
        lines.append(
            f"{name:<28} {total:>5} | {_cells(result.stdlib)} | {_cells(result.sockserve)} | "
            f"{len(result.ours):>4} {result.theirs():>6} {len(result.flaky):>5} "
            f"{interp:>6} {seconds:>5.0f}s"
        )
    lines.append("-" * len(head))
    lines.append(
        "ours: passed on the stdlib, failed with sockserve; theirs: failed on the stdlib; "
        "interp: Python processes that ran with sockserve as socketserver; ! = run timed out"
    )
    return "\n".join(lines)
