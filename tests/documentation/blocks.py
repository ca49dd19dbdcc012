"""The fenced code blocks of the Markdown documentation, and the marker in front of each.

A block is a complete example when the line before its fence (blank lines
aside) is an HTML comment ``<!-- example: KIND [CHECK] -->``, invisible in the
rendered page:

* ``run``: a program that ends by itself; it must exit with status 0;
* ``serve [echo]``: a server that runs until it is stopped; the test starts it
  on free loopback ports, waits until it listens, talks to it (``echo``: a line
  sent comes back; without a check: a connection is accepted) and stops it;
* ``skip``: a fragment that is not even valid Python (not compiled).

Every other Python block is compiled, so a syntax error cannot hide in a page
either. See ``tests/README.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPO", "Block", "blocks_of", "documentation_files"]

REPO = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<words>[^>]*?)\s*-->\s*$")
KINDS = frozenset({"run", "serve", "skip"})
PYTHON = frozenset({"python", "py", "python3"})
SHELL = frozenset({"sh", "bash", "shell", "console"})


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, and its marker's words."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: tuple[str, ...]  # () when unmarked, else ("serve", "echo") ...

    @property
    def kind(self) -> str:
        return self.marker[0] if self.marker else ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def documentation_files() -> list[Path]:
    """README.md and every page under docs/ (the pages the site is built from)."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of ``path``; raises ValueError for an unknown marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    marker: tuple[str, ...] = ()
    index = 0
    while index < len(lines):
        text = lines[index]
        opening = _FENCE.match(text)
        if opening is None:
            marked = _MARKER.match(text)
            if marked:
                marker = tuple(marked["words"].replace(",", " ").split())
                if not marker or marker[0] not in KINDS:
                    raise ValueError(f"{path}:{index + 1}: unknown example marker {text.strip()!r}")
            elif text.strip():
                marker = ()
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        start = index - len(body)  # the fence's own line number, 1-based
        found.append(Block(path, start, opening["lang"].lower(), "\n".join(body) + "\n", marker))
        marker = ()
        index += 1
    return found
