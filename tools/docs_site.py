"""mkdocs hooks: the README is the site's home page; docstrings' Sphinx roles read cleanly.

The README lives at the repository root, where GitHub and PyPI show it, and
links to the pages as ``docs/NAME.md``; the site is built from ``docs/``. So
the home page is generated from it at build time, with ``docs/`` dropped from
those links, instead of keeping a copy that would drift.

The docstrings cross-reference in Sphinx's way (``:class:`~sockserve.pool.ThreadPoolMixIn```),
which mkdocstrings renders as text with the role in front; the role is
dropped (and a ``~`` shortens the name, as in Sphinx), leaving the code span.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[1] / "README.md"
_DOCS_LINK = re.compile(r"\]\(docs/")
_ROLE = re.compile(r":(?:class|mod|func|meth|attr|data|exc|obj|const):<code>(~?)([^<]+)</code>")


def on_files(files: Files, config: Any) -> Files:
    text = _DOCS_LINK.sub("](", README.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    return _ROLE.sub(_code_span, html)


def _code_span(match: re.Match[str]) -> str:
    name = match[2]
    if "&lt;" in name:  # :mod:`text <target>`: the text is what a reader should see
        name = name.partition("&lt;")[0].strip()
    elif match[1]:
        name = name.rpartition(".")[2]
    return f"<code>{name}</code>"
