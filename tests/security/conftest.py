"""Fixtures of the security tests: one throw-away PKI per session (trustme)."""

from __future__ import annotations

import pytest

from .tls_kit import PKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a server certificate for localhost, and their PEM files."""
    return PKI.create(tmp_path_factory.mktemp("pki"))
