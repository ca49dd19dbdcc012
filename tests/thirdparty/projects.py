"""The projects of the third-party suite: what is installed, which tests run, and why each.

A project earns its place by building a server on ``socketserver`` in code
people run, and by shipping in its sdist tests that start that server and pass
on the stdlib here. Each adds a way of using the API the others do not:

* werkzeug: ``http.server`` + ``ThreadingMixIn``, in dev-server processes;
  ``bind_and_activate=False``, ``server_close()`` then a socket from
  ``socket.fromfd`` (the reloader), the TLS ``wrap_socket`` recipe, Unix sockets.
* pytest-httpserver: werkzeug's ``make_server`` started and stopped hundreds of
  times in one process, from a pytest plugin, threaded or not.
* prometheus-client: ``wsgiref`` + ``ThreadingMixIn`` with ``daemon_threads``,
  TLS by replacing ``httpd.socket``; its tests serve with ``handle_request()``.
* mkdocs: ``ThreadingMixIn`` + ``wsgiref.simple_server.WSGIServer`` with
  ``bind_and_activate=False``, its own ``serve_forever``/``shutdown``, a socket
  mocked away and requests fed to the handler directly.
* dnslib: ``ThreadingMixIn`` over ``UDPServer`` and ``TCPServer`` with a
  ``BaseRequestHandler`` (the datagram path), stopped with ``shutdown()``.

Evaluated and left out: websocket-server (a ``ThreadingMixIn``/``TCPServer``
server, but its sdist ships no tests); pytest-localserver (werkzeug's
``make_server`` again, which pytest-httpserver already covers).

Versions are pinned, the project's and its test tools' alike, and the rest of
the environment is held by ``constraints/<name>.txt``: a result changes when
sockserve changes, not when PyPI does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parent / "constraints"


@dataclass(frozen=True)
class Project:
    #: Short name: the venv's directory and the row of the table.
    name: str
    #: The distribution and its pinned version; installed from its sdist.
    requirement: str
    #: What its tests need beyond the project's own dependencies (pinned).
    test_requirements: tuple[str, ...]
    #: pytest arguments, relative to the root of the unpacked sdist.
    tests: tuple[str, ...]
    #: What of the socketserver API the project exercises (shown with -v).
    uses: str
    #: Seconds the whole run of one mode may take before it is stopped (healthy
    #: runs take under 30; this leaves room for a few tests hanging to their timeout).
    timeout: float = 150.0
    #: Extra pytest options (markers to deselect, doctest flags).
    pytest_args: tuple[str, ...] = field(default=())

    @property
    def distribution(self) -> str:
        return self.requirement.partition("==")[0]

    @property
    def version(self) -> str:
        return self.requirement.partition("==")[2]

    @property
    def constraints(self) -> Path:
        return CONSTRAINTS / f"{self.name}.txt"


# Every project's tests get pytest and pytest-timeout (the runner bounds each test).
_PYTEST = ("pytest==9.2.0", "pytest-timeout==2.4.0")

PROJECTS: tuple[Project, ...] = (
    Project(
        name="werkzeug",
        requirement="werkzeug==3.1.9",
        # watchdog 7 makes werkzeug 3.1's watchdog reloader spin without
        # reloading (on the stdlib too); 6.0.0 is the release werkzeug 3.1 tested.
        test_requirements=(
            *_PYTEST,
            "cryptography==50.0.2",
            "ephemeral-port-reserve==1.1.4",
            "watchdog==6.0.0",
        ),
        tests=("tests/test_serving.py",),
        uses="http.server + ThreadingMixIn in dev-server processes, the reloader's fromfd, TLS",
    ),
    Project(
        name="pytest-httpserver",
        requirement="pytest-httpserver==1.2.1",
        test_requirements=(*_PYTEST, "werkzeug==3.1.9", "requests==2.34.2"),
        tests=("tests",),
        # The release tests inspect the project's build metadata, not a server.
        pytest_args=("-m", "not release"),
        uses="werkzeug's make_server started and stopped per test, threaded or not",
    ),
    Project(
        name="prometheus-client",
        requirement="prometheus-client==0.26.0",
        test_requirements=_PYTEST,
        tests=("tests/test_exposition.py",),
        # Whether the client sees the server's TLS alert (what the test expects)
        # or the connection's end first is a race: it failed in 10 and 12 of 15
        # runs here, on the stdlib and on sockserve alike.
        pytest_args=(
            "--deselect",
            "tests/test_exposition.py::TestWsgiTLS::test_mtls_untrusted_client_cert_raises",
        ),
        uses="wsgiref + ThreadingMixIn, TLS by replacing httpd.socket, handle_request()",
    ),
    Project(
        name="mkdocs",
        requirement="mkdocs==1.6.1",
        test_requirements=_PYTEST,
        tests=("mkdocs/tests/livereload_tests.py",),
        # mkdocs runs these with unittest; pytest would also collect the
        # module's context manager testing_server() as a test and fail it.
        pytest_args=("--deselect", "mkdocs/tests/livereload_tests.py::testing_server"),
        uses="ThreadingMixIn + wsgiref WSGIServer, bind_and_activate=False, its own shutdown",
    ),
    Project(
        name="dnslib",
        requirement="dnslib==0.9.26",
        test_requirements=_PYTEST,
        tests=("dnslib/server.py",),
        pytest_args=("--doctest-modules", "-o", "doctest_optionflags=ELLIPSIS"),
        uses="ThreadingMixIn over UDPServer and TCPServer, BaseRequestHandler",
    ),
)
