"""The classic recipe ``httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)``.

Run on ``http.server.HTTPServer`` / ``ThreadingHTTPServer`` with sockserve in
socketserver's place (``run_tls_recipe.py``, in a child process so the
substitution cannot leak into this one): HTTPS is served, and a client that
connects and never starts its handshake no longer stops the server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.processes import run

from .tls_kit import PKI

HERE = Path(__file__).resolve().parent


def test_the_wrapped_listener_recipe_serves_https_and_survives_a_silent_client(
    pki: PKI,
) -> None:
    done = run(
        [
            sys.executable,
            "-X",
            "dev",
            str(HERE / "run_tls_recipe.py"),
            str(pki.ca_file),
            str(pki.cert_file),
            str(pki.key_file),
        ],
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    threading_line, inline_line, ok = done.stdout.splitlines()
    # Threads: served while the silent client still waited for its deadline.
    assert threading_line == "ThreadingHTTPServer: served; failures when served: {}"
    # Inline: served once the silent client's handshake had timed out.
    assert inline_line == "HTTPServer: served; failures when served: {'tls:timeout': 1}"
    assert ok == "OK"
    assert "Traceback" not in done.stderr
