"""One virtualenv per project, built once from the project's sdist and kept while its pins hold.

Layout under the cache directory (``.thirdparty/`` by default, git-ignored)::

    <name>-<key>/venv/           the interpreter the project's tests run in
    <name>-<key>/src/            the unpacked sdist: its tests and pytest config
    <name>-<key>/ready           written last: the directory is complete

``key`` hashes everything that decides the contents (pins, constraints, the
Python version), so a changed pin builds a new directory and a rerun with the
same pins reuses the old one. A build happens in a temporary directory renamed
into place when done, so an interrupted build is never mistaken for a cache.

The venv is made without pip (``ensurepip`` costs seconds per venv); the
running interpreter's pip installs into it through ``pip --python``. pip's own
download cache is shared, so the stdlib and sockserve runs, and reruns, fetch
nothing twice.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
from pathlib import Path

from .projects import Project

INJECT = Path(__file__).resolve().parent / "inject"
#: The venv's site-packages, relative to the venv (the layout of this Python).
_PURELIB = Path(sysconfig.get_path("purelib", vars={"base": "", "platbase": ""}).lstrip("/"))
PIP_TIMEOUT = 600.0


class BuildError(Exception):
    """A venv could not be built (PyPI unreachable, a pin that does not exist, ...)."""


def cache_key(project: Project) -> str:
    parts = [
        project.requirement,
        *project.test_requirements,
        project.constraints.read_text(encoding="utf-8") if project.constraints.exists() else "",
        f"{sys.version_info[:3]}",
        "layout-1",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


class ProjectEnv:
    """The built venv of one project and the switch between the two modes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.src = root / "src"
        self.python = self.venv / "bin" / "python"
        self.site_packages = self.venv / _PURELIB

    @property
    def inject_flag(self) -> Path:
        return self.venv / "sockserve-inject"

    @property
    def inject_log(self) -> Path:
        return self.venv / "sockserve-injected.log"

    def install_helpers(self) -> None:
        """(Re)copy the injector and the report plugin: cheap, and always this tree's.

        Also an empty ``pytest.ini`` beside ``src/``: a project without a
        pytest configuration of its own must get pytest's defaults, not the
        configuration of whatever repository the cache sits in.
        """
        (self.root / "pytest.ini").write_text(
            "# Stops pytest's search for a configuration here.\n[pytest]\n", encoding="utf-8"
        )
        for name in ("_sockserve_inject.py", "_sockserve_report.py"):
            shutil.copyfile(INJECT / name, self.site_packages / name)
        (self.site_packages / "_sockserve_inject.pth").write_text(
            "import _sockserve_inject\n", encoding="utf-8"
        )

    def use_sockserve(self, source: Path | None) -> None:
        """Make every interpreter of this venv import sockserve (from ``source``) as socketserver.

        ``None``: the stdlib. The log of injected interpreters starts empty.
        """
        self.inject_log.unlink(missing_ok=True)
        if source is None:
            self.inject_flag.unlink(missing_ok=True)
        else:
            self.inject_flag.write_text(f"{source}\n", encoding="utf-8")

    def injected(self) -> tuple[int, int]:
        """(interpreters that switched to sockserve, interpreters where switching failed)."""
        if not self.inject_log.exists():
            return 0, 0
        lines = self.inject_log.read_text(encoding="utf-8").splitlines()
        failed = sum(1 for line in lines if line.startswith("failed "))
        return len(lines) - failed, failed


def ensure_env(project: Project, cache: Path) -> ProjectEnv:
    """The project's venv, built now unless a complete one with the same key exists."""
    root = cache / f"{project.name}-{cache_key(project)}"
    if not (root / "ready").exists():
        _build(project, root)
    env = ProjectEnv(root)
    env.install_helpers()
    return env


def _run(command: list[str], what: str, timeout: float = PIP_TIMEOUT) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise BuildError(f"{what} failed ({result.returncode}):\n" + "\n".join(tail))


def _build(project: Project, root: Path) -> None:
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    downloads = building / "sdist"
    pip = [sys.executable, "-m", "pip"]
    quiet = ["--quiet", "--disable-pip-version-check", "--no-input"]
    # Byte-compiling every installed file costs more CPU than the tests use;
    # the interpreters compile what they import, once, into __pycache__.
    no_compile = ["--no-compile"]
    _run(
        [
            *pip, "download", *quiet, "--no-deps", "--no-binary", ":all:",
            "--dest", str(downloads), project.requirement,
        ],
        f"downloading the sdist of {project.requirement}",
    )  # fmt: skip
    sdists = sorted(downloads.iterdir())
    if len(sdists) != 1 or not sdists[0].name.endswith((".tar.gz", ".zip")):
        raise BuildError(f"expected one sdist for {project.requirement}, got {sdists}")
    sdist = sdists[0]
    _unpack(sdist, building / "src")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(building / "venv")
    env = ProjectEnv(building)
    constraints = ["--constraint", str(project.constraints)] if project.constraints.exists() else []
    _run(
        [
            *pip, "--python", str(env.python), "install", *quiet, *no_compile, *constraints,
            str(sdist), *project.test_requirements,
        ],
        f"installing {project.requirement} from its sdist and its test requirements",
    )  # fmt: skip
    (building / "ready").write_text(project.requirement + "\n", encoding="utf-8")
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)


def _unpack(sdist: Path, dest: Path) -> None:
    """Unpack the sdist's single top directory as ``dest``."""
    scratch = dest.with_name("unpacked")
    if sdist.name.endswith(".zip"):
        shutil.unpack_archive(sdist, scratch)
    else:
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):  # 3.11.4+: refuse paths outside scratch
                archive.extractall(scratch, filter="data")
            else:
                archive.extractall(scratch)
    tops = list(scratch.iterdir())
    if len(tops) != 1 or not tops[0].is_dir():
        raise BuildError(f"{sdist.name}: expected one top-level directory, got {tops}")
    tops[0].rename(dest)
    scratch.rmdir()
