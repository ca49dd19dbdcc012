"""Parametrizes the conformance tests over ``conformance_table.SERVER_KINDS``.

A test here that takes ``kind`` (or ``harness``) runs once per row of the table;
``@pytest.mark.kinds(predicate)`` keeps only the rows where ``predicate(kind)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conformance_table import SERVER_KINDS, Harness, ServerKind

from helpers.net import Net


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kinds(predicate): run a conformance test only for the matching ServerKinds"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("kinds")
    select: Callable[[ServerKind], bool] = marker.args[0] if marker else (lambda _kind: True)
    kinds = [kind for kind in SERVER_KINDS if select(kind)]
    metafunc.parametrize("kind", kinds, ids=[kind.id for kind in kinds])


@pytest.fixture
def harness(kind: ServerKind, tmp_path: Path, net: Net) -> Harness:
    return Harness(kind, tmp_path, net)
