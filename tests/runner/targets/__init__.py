"""Targets that the runner tests serve: ``tests.runner.targets.mod:Handler`` and friends.

Imported by the ``sockserve`` child processes (the repository root is on their
``PYTHONPATH``), never by the test process itself.
"""
