"""mkdocs hook: the README is the site's home page.

The README lives at the repository root, where GitHub and PyPI show it, and
links to the pages as ``docs/NAME.md``; the site is built from ``docs/``. So
the home page is generated from it at build time, with ``docs/`` dropped from
those links, instead of keeping a copy that would drift.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[1] / "README.md"
_DOCS_LINK = re.compile(r"\]\(docs/")


def on_files(files: Files, config: Any) -> Files:
    text = _DOCS_LINK.sub("](", README.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files
