"""The classic HTTPS recipe on ``http.server`` rebuilt on sockserve (child of test_tls_recipe).

``httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)``: with the
stdlib, ``accept()`` on that socket runs each handshake on the serving
thread, so one client that connects and says nothing stops the server for
good. On sockserve the same lines serve HTTPS, and the handshake is a
pre-handler step: beside the serving loop for ``ThreadingHTTPServer``, in
place but bounded by ``handshake_timeout`` for ``HTTPServer``.

Usage: ``python run_tls_recipe.py CA_FILE CERT_FILE KEY_FILE``. Prints one
line per server and ``OK``; any failure raises.
"""

from __future__ import annotations

import sys

import sockserve

assert "http.server" not in sys.modules
sys.modules["socketserver"] = sockserve

import http.client  # noqa: E402  (the imports below must see the substitution)
import http.server  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import threading  # noqa: E402

TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 1.0


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello over https\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def https_get(port: int, ca_file: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=ca_file)
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=TIMEOUT)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check(cls: type[http.server.HTTPServer], ca_file: str, cert: str, key: str) -> str:
    assert issubclass(cls, sockserve.TCPServer)
    httpd = cls(("127.0.0.1", 0), Hello)
    httpd.handshake_timeout = HANDSHAKE_TIMEOUT  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 60})
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as silent:
            status, body = https_get(port, ca_file)
            assert (status, body) == (200, b"hello over https\n"), (status, body)
            failures_when_served = dict(httpd.stats().step_failures)  # type: ignore[attr-defined]
            # The silent client is cut at handshake_timeout, whatever the class.
            silent.settimeout(HANDSHAKE_TIMEOUT + TIMEOUT)
            assert silent.recv(1) == b""
        assert httpd.wait_for(  # type: ignore[attr-defined]
            lambda st: st.step_failures.get("tls:timeout") == 1 and st.active == 0, TIMEOUT
        ), httpd.stats()  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        thread.join(TIMEOUT)
        httpd.server_close()
    assert not thread.is_alive(), "serve_forever did not return"
    return f"{cls.__name__}: served; failures when served: {failures_when_served}"


def main() -> None:
    ca_file, cert, key = sys.argv[1:4]
    # Threads: the handshake runs beside the loop, so the HTTPS client is served
    # while the silent one still waits (nothing has failed yet).
    print(check(http.server.ThreadingHTTPServer, ca_file, cert, key))
    # Inline: the silent client's handshake blocks the loop, but only until
    # handshake_timeout; then the HTTPS client is served.
    print(check(http.server.HTTPServer, ca_file, cert, key))
    print("OK")


if __name__ == "__main__":
    main()
