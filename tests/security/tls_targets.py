"""Targets the TLS runner tests serve with ``sockserve run`` (imported by the child only).

``tests.security.tls_targets:Hello`` is an ``http.server`` handler, for curl;
``Lines`` answers a line protocol: ``pid`` (which process served),
``info`` (what the handler saw of the TLS session, as JSON), anything else
comes back as it is.
"""

from __future__ import annotations

import http.server
import json
import os

import sockserve


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"hello over https from {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the runner's access log is the place for this


class Lines(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        while line := self.rfile.readline():
            if line == b"pid\n":
                line = f"{os.getpid()}\n".encode()
            elif line == b"info\n":
                info = self.server.connection_info(self.request)
                tls = info.tls if info is not None else None
                answer = (
                    {"tls": None}
                    if tls is None
                    else {
                        "version": tls.version,
                        "alpn": tls.alpn,
                        "server_name": tls.server_name,
                    }
                )
                line = json.dumps(answer).encode() + b"\n"
            self.wfile.write(line)
