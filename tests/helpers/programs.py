"""External programs some tests need (nginx, HAProxy, a C compiler...): found, or else.

Outside CI a missing program skips the test with the command that installs
it, so a developer without nginx can still run the suite. In CI (``CI=true``,
as ``.ci/run`` and most CI services set it) a missing program is a failure:
the machine was meant to have it (``.ci/run`` installs it), and a skip there
would let the integration tests silently stop running.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

# Where Debian puts daemons: not on an ordinary user's PATH.
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def in_ci() -> bool:
    """Whether this run is a CI run (``CI`` set to true, 1 or yes)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing(reason: str) -> NoReturn:
    """Skip the test, or in CI fail it, because something it needs is not installed."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing program is a failure, not a skip)")
    pytest.skip(reason)


def require_program(name: str, install: str) -> str:
    """The path of program ``name``; if there is none, skip (outside CI) or fail (in CI).

    ``install`` says how to get it, e.g. ``"apt-get install haproxy"``; it
    ends up in the skip reason (``pytest -ra`` lists them).
    """
    found = shutil.which(name) or shutil.which(name, path=_SBIN)
    if found is None:
        missing(f"{name} not installed: {install}")
    return found
