"""Serve one HTTP request on an inherited descriptor, the way werkzeug's reloader child does.

Usage: ``python inherited_fd_server.py FD`` (a listening TCP socket passed by
the parent). ``http.server`` is built on sockserve (it replaces
``socketserver`` before the import). The steps are werkzeug's: construct with
``bind_and_activate=False``, ``server_close()``, ``socket.fromfd``, set
``server_address``, ``serve_forever()``. Prints ``OK`` and exits 0 once the
request was answered; exits 1 if none came within the timeout.
"""

from __future__ import annotations

import sys

import sockserve

assert "http.server" not in sys.modules
sys.modules["socketserver"] = sockserve

import http.server  # noqa: E402  (must see the substitution)
import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

TIMEOUT = 10.0
answered = threading.Event()


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = isinstance(self.server, sockserve.TCPServer)
        body = b"served by sockserve.TCPServer\n" if ok else b"served by the stdlib\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        answered.set()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    fd = int(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello, bind_and_activate=False)
    server.server_close()
    server.socket = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
    os.close(fd)  # fromfd duplicated it
    server.server_address = server.socket.getsockname()

    def stop_when_answered() -> None:
        answered.wait(TIMEOUT)
        server.shutdown()

    stopper = threading.Thread(target=stop_when_answered)
    stopper.start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        stopper.join()
    if not answered.is_set():
        print("no request within the timeout", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
