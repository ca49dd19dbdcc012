"""werkzeug's reloader child, reduced: serve a socket put in place after ``server_close()``.

werkzeug's dev server (Flask's ``flask run``) with its reloader on does this in
the child process: build the server with ``bind_and_activate=False``, call
``server_close()`` to drop the socket the constructor made, set
``self.socket = socket.fromfd(inherited_fd, ...)`` and ``self.server_address``,
then ``serve_forever()``. The stdlib serves that socket; sockserve used to
raise "server is closed: cannot become serving" in the serving thread, and the
dev server never answered (issue 16).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from pathlib import Path

import sockserve
from helpers.net import TIMEOUT

from ._both import LOCALHOST, echo_handler, round_trip, serving

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
SRC = Path(__file__).resolve().parent.parent.parent / "src"


def test_the_minimal_reproduction_serves_the_replaced_socket() -> None:
    server = sockserve.ThreadingTCPServer(LOCALHOST, echo_handler(sockserve), False)
    server.server_close()
    with socket.create_server(LOCALHOST) as inherited:
        server.socket = socket.fromfd(inherited.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    server.server_address = server.socket.getsockname()
    try:
        with serving(server) as raised:
            assert round_trip(server.server_address) == b"ping\n"
            assert server.state is sockserve.State.SERVING
        assert raised == []
        assert server.state is sockserve.State.IDLE  # shut down; the new socket is still open
    finally:
        server.server_close()
    assert server.state is sockserve.State.CLOSED


def test_http_server_on_sockserve_serves_an_inherited_descriptor() -> None:
    """The same steps as werkzeug, with ``http.server`` built on sockserve in a child process.

    The parent binds and listens, as werkzeug's reloader parent does, and passes
    the descriptor to the child; the child serves it with a
    ``ThreadingHTTPServer`` whose ``socketserver`` is sockserve.
    """
    with socket.create_server(LOCALHOST) as listener:
        address = listener.getsockname()
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        child = subprocess.Popen(
            [sys.executable, str(HELPERS / "inherited_fd_server.py"), str(listener.fileno())],
            pass_fds=[listener.fileno()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        connection = http.client.HTTPConnection(*address, timeout=TIMEOUT)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200
        assert body == b"served by sockserve.TCPServer\n"
        out, err = child.communicate(timeout=TIMEOUT)
        assert child.returncode == 0, err
        assert out == "OK\n"
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=TIMEOUT)
