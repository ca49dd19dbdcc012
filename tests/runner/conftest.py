"""Fixtures of the runner tests: each child process is killed, with its group, at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from .support import Child, child_env, sockserve_argv

Spawn = Callable[..., Child]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """``spawn(argv, env=..., pass_fds=...)``: start any process (haproxy, a wrapper...)."""
    started: list[Child] = []

    def spawn(
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        cwd: Path | str | None = None,
    ) -> Child:
        child = Child(argv, env=env, pass_fds=pass_fds, cwd=cwd)
        started.append(child)
        return child

    yield spawn
    for child in reversed(started):
        child.close()


@pytest.fixture
def sockserve(spawn: Spawn) -> Callable[..., Child]:
    """``sockserve("run", TARGET, "--workers", "2", env=...)``: ``python -m sockserve ...``."""

    def start(*args: str, env: Mapping[str, str] | None = None, **kwargs: Any) -> Child:
        return spawn(sockserve_argv(*args), env=env if env is not None else child_env(), **kwargs)

    return start
