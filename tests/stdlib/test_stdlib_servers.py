"""The stdlib's own servers on sockserve: http.server and xmlrpc.server, unchanged.

``http.server`` and ``xmlrpc.server`` subclass socketserver's classes. Run with
sockserve in socketserver's place (``run_stdlib_servers.py``, in a child
process, so the substitution cannot leak into this one), and with their
patterns copied onto sockserve's classes here, they must serve as before.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import sys
from pathlib import Path
from typing import Any

import sockserve
from helpers.net import TIMEOUT, Net
from helpers.processes import run

HERE = Path(__file__).resolve().parent
LOCALHOST = ("127.0.0.1", 0)


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _http_get(address: Any, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(address[0], address[1], timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_simple_http_request_handler_on_a_sockserve_server(net: Net, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello from sockserve\n")
    handler = functools.partial(QuietFiles, directory=str(tmp_path))
    server = net.server(sockserve.ThreadingTCPServer(LOCALHOST, handler))
    net.serve(server)
    assert _http_get(server.server_address, "/hello.txt") == (200, b"hello from sockserve\n")
    status, _body = _http_get(server.server_address, "/missing.txt")
    assert status == 404


def test_a_server_subclass_written_like_http_server(net: Net) -> None:
    """HTTPServer's pattern: server_bind calls super() and records name and port."""

    class MyHTTPServer(sockserve.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

        def server_bind(self) -> None:
            super().server_bind()
            host, port = self.server_address[:2]
            self.server_name = host
            self.server_port = port

    class WhoAmI(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{self.server.server_name}:{self.server.server_port}{self.path}".encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = net.server(MyHTTPServer(LOCALHOST, WhoAmI))
    assert server.server_port == server.server_address[1] != 0
    net.serve(server)
    expected = f"127.0.0.1:{server.server_port}/who".encode()
    assert _http_get(server.server_address, "/who") == (200, expected)


def test_http_server_and_xmlrpc_server_run_on_sockserve(tmp_path: Path) -> None:
    """The stdlib's own server classes, with socketserver replaced by sockserve."""
    (tmp_path / "hello.txt").write_bytes(b"served by http.server on sockserve\n")
    result = run(
        [sys.executable, "-X", "dev", str(HERE / "run_stdlib_servers.py"), str(tmp_path)],
        timeout=6 * TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "OK"
    assert "Warning" not in result.stderr, result.stderr
