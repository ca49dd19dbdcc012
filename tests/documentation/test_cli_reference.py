"""docs/cli-reference.md is what ``python3 -m sockserve.cli_reference`` writes today.

Options are added in the schema (``src/sockserve/options.py``); this fails
until the page is regenerated with the one command it prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

from documentation.blocks import REPO
from helpers.processes import run
from sockserve.cli_reference import COMMAND, reference
from sockserve.runner.settings import RUNNER_SETTINGS

PAGE = REPO / "docs" / "cli-reference.md"


def test_the_page_is_up_to_date() -> None:
    assert PAGE.read_text(encoding="utf-8") == reference(), (
        f"docs/cli-reference.md is stale: regenerate it from the repository root with\n"
        f"    {COMMAND}\n"
        f"(PYTHONPATH=src first if sockserve is installed from another tree)"
    )


def test_every_setting_has_a_row_with_its_variable_and_key() -> None:
    text = reference()
    for opt in RUNNER_SETTINGS:
        assert f"`--{opt.flag}" in text
        assert f"| `{opt.env}` | `{opt.key}` |" in text


def test_the_output_does_not_depend_on_the_machine() -> None:
    """``run``'s default worker count is the machine's CPU count: written as words."""
    assert "| the number of CPUs; `0` |" in reference()


def test_check_names_the_command_when_stale(tmp_path: Path) -> None:
    stale = tmp_path / "cli-reference.md"
    stale.write_text(reference().replace("--threads", "--treads"))
    argv = [sys.executable, "-m", "sockserve.cli_reference", "--check", str(stale)]
    result = run(argv)
    assert result.returncode == 1
    assert COMMAND in result.stderr
    stale.write_text(reference())
    result = run(argv)
    assert result.returncode == 0, result.stderr
