"""``http.server`` and ``xmlrpc.server`` rebuilt on sockserve (child of test_stdlib_servers).

``sys.modules["socketserver"]`` is replaced by sockserve before either module is
imported, so their ``HTTPServer``, ``ThreadingHTTPServer`` and
``SimpleXMLRPCServer`` subclass sockserve's classes: the code written for the
stdlib runs unchanged on top of sockserve. Usage: ``python run_stdlib_servers.py
DIRECTORY`` where DIRECTORY holds ``hello.txt``. Prints ``OK`` and exits 0 when
both servers answered correctly; any failure raises.
"""

from __future__ import annotations

import sys

import sockserve

assert "http.server" not in sys.modules
assert "xmlrpc.server" not in sys.modules
sys.modules["socketserver"] = sockserve

import functools  # noqa: E402  (the imports below must see the substitution)
import http.client  # noqa: E402
import http.server  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import xmlrpc.client  # noqa: E402
import xmlrpc.server  # noqa: E402
from pathlib import Path  # noqa: E402

TIMEOUT = 10.0


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_in_thread(server: sockserve.BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 60})
    thread.start()
    return thread


def stop(server: sockserve.BaseServer, thread: threading.Thread) -> None:
    server.shutdown()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "serve_forever did not return"


def check_http_server(directory: Path) -> None:
    assert issubclass(http.server.HTTPServer, sockserve.TCPServer)
    assert issubclass(http.server.ThreadingHTTPServer, sockserve.ThreadingMixIn)
    handler = functools.partial(QuietFiles, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        assert isinstance(server, sockserve.TCPServer)
        # HTTPServer.server_bind ran on top of sockserve's and saw the bound port.
        assert server.server_port == server.server_address[1] != 0
        assert server.server_name
        thread = serve_in_thread(server)
        try:
            connection = http.client.HTTPConnection(
                "127.0.0.1", server.server_port, timeout=TIMEOUT
            )
            try:
                connection.request("GET", "/hello.txt")
                response = connection.getresponse()
                body = response.read()
            finally:
                connection.close()
            assert response.status == 200, response.status
            assert body == (directory / "hello.txt").read_bytes(), body
        finally:
            stop(server, thread)
    assert server.socket.fileno() == -1


def check_xmlrpc_server() -> None:
    assert issubclass(xmlrpc.server.SimpleXMLRPCServer, sockserve.TCPServer)
    with xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False) as server:
        server.register_function(lambda a, b: a + b, "add")
        server.register_function(lambda: sockserve.__name__, "served_by")
        thread = serve_in_thread(server)
        try:
            port = server.server_address[1]
            with xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/") as proxy:
                assert proxy.add(2, 3) == 5
                assert proxy.add("sock", "serve") == "sockserve"
                assert proxy.served_by() == "sockserve"
        finally:
            stop(server, thread)


def main() -> int:
    socket.setdefaulttimeout(TIMEOUT)  # xmlrpc.client has no timeout parameter
    check_http_server(Path(sys.argv[1]))
    check_xmlrpc_server()
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
