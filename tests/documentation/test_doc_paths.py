"""Every file of this repository the documentation names exists.

A path in backticks (`src/sockserve/strategies/workers.py`,
`sockserve/core/connopts.py`, `engine/pipeline.py`, `deploy/systemd/...`) is
looked up from the repository root, from ``src/`` and from ``src/sockserve/``
(how the pages abbreviate), and next to the page itself. Module moves left
docs/performance.md pointing at files that had gone; this keeps it from
happening again.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from documentation.blocks import REPO, documentation_files

# `a/b.py`, `a/b/`: a relative path with at least one slash.
_PATH = re.compile(r"`((?:\.?[\w@.-]+/)+[\w@.-]*)`")
_OURS = ("src/", "sockserve/", "tests/", "benchmarks/", "deploy/", "docs/", ".ci/")
_PACKAGES = tuple(f"{p.name}/" for p in (REPO / "src" / "sockserve").iterdir() if p.is_dir())
# Written by runs, not kept in the repository.
_GENERATED = (".build/", ".thirdparty/")
# Other projects' files, named in the README's third-party table.
_THEIRS = frozenset({"tests/test_serving.py", "tests/test_exposition.py"})
PAGES = [*documentation_files(), REPO / "tests" / "README.md"]


def named_paths(page: Path) -> list[str]:
    """The paths into this repository that ``page`` names in backticks."""
    found = []
    for match in _PATH.finditer(page.read_text(encoding="utf-8")):
        path = match[1]
        if any(part in path for part in _GENERATED) or path in _THEIRS:
            continue
        if path.startswith(_OURS + _PACKAGES) or (page.parent / path).exists():
            found.append(path)
    return found


def exists(page: Path, path: str) -> bool:
    bases = (REPO, REPO / "src", REPO / "src" / "sockserve", page.parent)
    return any((base / path).exists() for base in bases)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_named_paths_exist(page: Path) -> None:
    missing = [path for path in named_paths(page) if not exists(page, path)]
    assert not missing, f"{page.relative_to(REPO)} names files that do not exist: {missing}"


def test_paths_are_found_at_all() -> None:
    """The pattern still matches the way the pages write paths."""
    assert "src/sockserve/strategies/workers.py" in named_paths(REPO / "docs" / "performance.md")
    assert "engine/pipeline.py" in named_paths(REPO / "docs" / "pipeline.md")
