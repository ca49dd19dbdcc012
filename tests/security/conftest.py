"""Fixtures of the security tests: one throw-away PKI per session (trustme), the CLI."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers.processes import Child, child_env, sockserve_argv

from .tls_kit import PKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a server certificate for localhost, and their PEM files."""
    return PKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def run_sockserve(spawn: Callable[..., Child]) -> Callable[..., Child]:
    """``run_sockserve("run", TARGET, ...)``: ``python -m sockserve ...`` in a child process.

    The repository root is importable there (``tests.security.tls_targets``);
    the process group is killed at teardown.
    """

    def start(*args: str) -> Child:
        return spawn(sockserve_argv(*args), env=child_env())

    return start
