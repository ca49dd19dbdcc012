"""The third-party suite: other projects' server tests, on the stdlib and on sockserve.

CPython's own ``test_socketserver`` passing says little about the code people
run on ``socketserver``. This suite installs projects that build servers on it
(werkzeug's dev server, pytest-httpserver, prometheus_client's exporter, mkdocs'
live-reload server, dnslib's DNS server) from their sdists at pinned versions,
each into a virtualenv of its own, and runs each project's own server tests
twice in the same run: once on the stdlib, once with sockserve standing in for
``socketserver`` in every interpreter of that venv (subprocesses included).
A test that passes on the stdlib and fails on sockserve is ours to fix; one
that fails on both is theirs.

Run it alone with ``python3 -m tests.thirdparty`` (from the repository root) or
``python3 -m pytest -m thirdparty``. Needs PyPI; venvs are cached under
``.thirdparty/`` keyed by the pins, so reruns skip the installs.
"""
