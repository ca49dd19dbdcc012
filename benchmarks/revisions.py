"""Other revisions of sockserve, exported from git so one run measures them beside this tree.

``python -m benchmarks --compare-rev REV`` runs every selected sockserve kind
twice per round: once as usual (the working tree's ``src/``) and once as
``KIND@SHORTHASH``, whose server subprocess imports sockserve from REV instead.

Why only ``src/sockserve`` is exported: the server side of a sockserve kind
(``benchmarks/servers.py``, ``benchmarks/sockserve_handlers.py``) and the load
generator come from this tree for both revisions, so the two runs differ in
the library alone. A refactor that also changed the benchmark code would
otherwise measure that change too.

Each commit is exported once, into ``benchmarks/.build/revs/<full hash>/src``:
a commit's tree never changes, so the hash is the whole cache key. The export
is unpacked beside its final name and renamed into place, so a run that was
interrupted, or two runs at once, never leave a half-written tree behind.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import BUILD_DIR, REPO

#: What is exported: the package, not the repository.
PACKAGE_PATH = "src/sockserve"
GIT_TIMEOUT_S = 120.0


class RevisionError(RuntimeError):
    """The revision does not resolve, or holds no sockserve package to export."""


@dataclass(frozen=True)
class Revision:
    """One exported revision of sockserve."""

    #: as the user wrote it (``HEAD~1``, a tag, a hash)
    rev: str
    commit: str
    #: the short hash: the suffix of its kinds' names (``sockserve-pool@3e1d65b``)
    label: str
    subject: str
    #: the directory to put first on PYTHONPATH (it holds ``sockserve/``)
    src: Path

    def as_dict(self) -> dict[str, str]:
        """For the results JSON."""
        return {
            "rev": self.rev,
            "commit": self.commit,
            "label": self.label,
            "subject": self.subject,
            "src": str(self.src),
        }


def _git(*args: str) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise RevisionError("git is not installed: --compare-rev needs it") from exc
    except subprocess.TimeoutExpired as exc:
        raise RevisionError(f"git {' '.join(args)} did not finish in {GIT_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()
        raise RevisionError(f"git {' '.join(args)} failed: {detail}")
    return done.stdout


def resolve(rev: str) -> tuple[str, str, str]:
    """(full hash, short hash, subject) of ``rev``; RevisionError if it names no commit."""
    if not rev or rev.startswith("-"):
        raise RevisionError(f"not a git revision: {rev!r}")
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except RevisionError as exc:
        raise RevisionError(f"{rev!r} is not a commit of {REPO}") from exc
    short = _git("rev-parse", "--short", commit).decode().strip()
    subject = _git("log", "-1", "--format=%s", commit).decode(errors="replace").strip()
    return commit, short, subject


def export(rev: str, build_dir: Path = BUILD_DIR) -> Revision:
    """Export ``rev``'s sockserve package (once per commit) and describe it."""
    commit, short, subject = resolve(rev)
    root = build_dir / "revs" / commit
    found = Revision(rev=rev, commit=commit, label=short, subject=subject, src=root / "src")
    if (found.src / "sockserve" / "__init__.py").is_file():
        return found
    try:
        archive = _git("archive", "--format=tar", commit, "--", PACKAGE_PATH)
    except RevisionError as exc:
        raise RevisionError(f"{rev} ({short}) has no {PACKAGE_PATH} to benchmark: {exc}") from exc
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = root.parent / f".{commit}.{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(partial, filter="data")
    try:
        os.replace(partial, root)
    except OSError:
        # Another run exported the same commit first; its copy is as good.
        shutil.rmtree(partial, ignore_errors=True)
    if not (found.src / "sockserve" / "__init__.py").is_file():
        raise RevisionError(f"{rev} ({short}): the export holds no sockserve/__init__.py")
    return found


def export_all(revs: list[str], build_dir: Path = BUILD_DIR) -> list[Revision]:
    """Export each revision once; two names for one commit are one revision."""
    exported: dict[str, Revision] = {}
    for rev in revs:
        revision = export(rev, build_dir)
        exported.setdefault(revision.commit, revision)
    return list(exported.values())
