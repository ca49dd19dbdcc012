"""Run CPython's own ``test.test_socketserver`` with sockserve in place of socketserver.

Usage: ``python tests/stdlib/run_cpython_suite.py`` (any Python 3.11+ whose
``test`` package is installed; ``src`` must be importable). The one test we
skip by name is ``MiscTestCase.test_all``: it checks that each class's
``__module__`` is "socketserver", which sockserve's classes cannot be.
Exit status is unittest's: 0 only if every other test passed.
"""

from __future__ import annotations

import sys
import unittest

import sockserve

sys.modules["socketserver"] = sockserve  # before the test module imports it

from test import test_socketserver  # noqa: E402  (must follow the substitution)

EXCLUDED = {"test.test_socketserver.MiscTestCase.test_all"}


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    cases: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            cases.extend(_flatten(item))
        else:
            cases.append(item)
    return cases


def main() -> int:
    assert test_socketserver.socketserver is sockserve, "substitution did not take"
    loaded = unittest.defaultTestLoader.loadTestsFromModule(test_socketserver)
    cases = [case for case in _flatten(loaded) if case.id() not in EXCLUDED]
    result = unittest.TextTestRunner(verbosity=2).run(unittest.TestSuite(cases))
    # Skips would hide missing features (fork, AF_UNIX): count them as failures.
    if result.skipped:
        print(f"unexpected skips: {result.skipped}", file=sys.stderr)
        return 1
    return 0 if result.wasSuccessful() and result.testsRun == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
