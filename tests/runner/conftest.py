"""Fixtures of the runner tests: ``sockserve ...`` in a child process (``spawn`` underneath)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from helpers.processes import Child, child_env, sockserve_argv


@pytest.fixture
def sockserve(spawn: Callable[..., Child]) -> Callable[..., Child]:
    """``sockserve("run", TARGET, "--workers", "2", env=...)``: ``python -m sockserve ...``.

    Killed, with its workers, at teardown.
    """

    def start(*args: str, env: Mapping[str, str] | None = None, **kwargs: Any) -> Child:
        return spawn(sockserve_argv(*args), env=env if env is not None else child_env(), **kwargs)

    return start
