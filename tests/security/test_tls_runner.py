"""``sockserve run --certfile ...``: curl and Python's ssl client against the runner's TLS.

The runner builds its context from the flags (``--certfile``, ``--keyfile``,
``--ca-certs``, ``--cert-reqs``, ``--alpn``...) and serves TLS on every
stream listener, or only on its ``tls://`` binds. A certificate is rotated
without downtime: replace the files, send SIGHUP; new workers read them
(``--workers 1``), or the in-process server swaps its context
(``--workers 0``), and a client connecting all along never sees a refusal.
Missing ``curl`` skips outside CI and fails in CI.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.net import TIMEOUT
from helpers.processes import Child
from helpers.programs import require_program

from .tls_kit import HOST, PKI, ask, raw_connect, tls_client

HTTP_TARGET = "tests.security.tls_targets:Hello"
LINES_TARGET = "tests.security.tls_targets:Lines"


def _tls_flags(pki: PKI, cert: Path | None = None, key: Path | None = None) -> list[str]:
    return ["--certfile", str(cert or pki.cert_file), "--keyfile", str(key or pki.key_file)]


def _port(spec: str) -> int:
    return int(spec.rpartition(":")[2])


def curl(
    port: int, pki: PKI, *options: str, scheme: str = "https"
) -> subprocess.CompletedProcess[str]:
    """``curl --cacert CA https://localhost:PORT/`` (localhost pinned to 127.0.0.1)."""
    program = require_program("curl", "apt-get install curl")
    argv = [program, "-sS", "--max-time", str(TIMEOUT), "--cacert", str(pki.ca_file)]
    argv += ["--resolve", f"{HOST}:{port}:127.0.0.1", *options, f"{scheme}://{HOST}:{port}/"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 5, check=False)


@pytest.mark.parametrize(
    "workers", [["--workers", "2"], ["--workers", "0", "--worker-class", "fork"]]
)
def test_curl_gets_https_from_an_http_server_handler(
    run_sockserve: Callable[..., Child], pki: PKI, workers: list[str]
) -> None:
    server = run_sockserve("run", HTTP_TARGET, "--bind", "127.0.0.1:0", *workers, *_tls_flags(pki))
    port = server.port()
    done = curl(port, pki, "-w", "\n%{http_code} %{ssl_verify_result}")
    assert done.returncode == 0, done.stderr
    body, status = done.stdout.rsplit("\n", 1)
    assert body.startswith("hello over https from ")
    assert status == "200 0"  # served, and the certificate verified
    # Plain HTTP on the TLS port: refused by the handshake, the server carries on.
    plain = curl(port, pki, scheme="http")
    assert plain.returncode != 0
    again = curl(port, pki)
    assert again.returncode == 0 and again.stdout.startswith("hello over https"), again.stderr
    assert server.stop() == 0
    assert "Traceback" not in server.output


def test_curl_under_mutual_tls(
    run_sockserve: Callable[..., Child], pki: PKI, tmp_path: Path
) -> None:
    good_cert, good_key = tmp_path / "good.pem", tmp_path / "good.key"
    PKI.write_server(pki.ca.issue_cert("curl.example.org"), good_cert, good_key)
    bad_cert, bad_key = tmp_path / "bad.pem", tmp_path / "bad.key"
    PKI.write_server(pki.issue("curl.example.org", ca=type(pki.ca)()), bad_cert, bad_key)
    server = run_sockserve(
        "run", HTTP_TARGET, "--bind", "127.0.0.1:0", "--workers", "1", *_tls_flags(pki),
        "--cert-reqs", "required", "--ca-certs", str(pki.ca_file),
    )  # fmt: skip
    port = server.port()
    served = curl(port, pki, "--cert", str(good_cert), "--key", str(good_key))
    assert served.returncode == 0, served.stderr
    assert served.stdout.startswith("hello over https")
    for refused in (
        curl(port, pki),
        curl(port, pki, "--cert", str(bad_cert), "--key", str(bad_key)),
    ):
        assert refused.returncode != 0 and refused.stdout == ""
    assert server.stop() == 0
    assert "Traceback" not in server.output


def test_alpn_and_tls_binds_beside_plain_ones(
    run_sockserve: Callable[..., Child], pki: PKI
) -> None:
    server = run_sockserve(
        "run", LINES_TARGET, "--bind", "tls://127.0.0.1:0", "--bind", "127.0.0.1:0",
        "--workers", "1", *_tls_flags(pki), "--alpn", "h2,http/1.1",
    )  # fmt: skip
    tls_spec, plain_spec = server.listening(2)
    assert tls_spec.startswith("tls://") and not plain_spec.startswith("tls://")
    context = pki.client(alpn=["http/1.1", "h2"])
    with tls_client(("127.0.0.1", _port(tls_spec)), context) as client:
        info = json.loads(ask(client, b"info\n"))
    assert info == {"version": "TLSv1.3", "alpn": "h2", "server_name": HOST}
    with raw_connect(("127.0.0.1", _port(plain_spec))) as plain:
        assert json.loads(ask(plain, b"info\n")) == {"tls": None}
    assert server.stop() == 0


# -- certificate rotation ------------------------------------------------------------------


class TLSLoad:
    """A client thread: TLS connection, one line, close; again and again.

    Records the certificate each connection was served with, and every error
    (a refused or reset connection, a failed handshake) with its position.
    """

    def __init__(self, port: int, context: ssl.SSLContext, limit: float = 60.0) -> None:
        self.port = port
        self.context = context
        self.certificates: list[bytes] = []
        self.errors: list[str] = []
        self._limit = limit
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="tls-load")

    def _run(self) -> None:
        end = time.monotonic() + self._limit
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                with tls_client(("127.0.0.1", self.port), self.context, timeout=5.0) as client:
                    assert ask(client, b"ping\n") == b"ping\n"
                    cert = client.getpeercert(binary_form=True)
            except (OSError, AssertionError) as exc:
                with self._changed:
                    self.errors.append(f"{exc!r} after {len(self.certificates)} connections")
                    self._changed.notify_all()
                continue
            with self._changed:
                self.certificates.append(cert or b"")
                self._changed.notify_all()

    def wait(self, predicate: Callable[[list[bytes]], bool], what: str) -> None:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: predicate(self.certificates) or not self._thread.is_alive(), TIMEOUT
            )
            assert ok and predicate(self.certificates), (
                f"{what}: {len(self.certificates)} connections, errors {self.errors}"
            )

    def __enter__(self) -> TLSLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


def _der(leaf: Any) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def _replace_files(leaf: Any, cert: Path, key: Path) -> None:
    """Deploy a renewed certificate the careful way: whole files, renamed into place."""
    staged_cert, staged_key = cert.with_suffix(".new.pem"), key.with_suffix(".new.key")
    PKI.write_server(leaf, staged_cert, staged_key)
    os.replace(staged_key, key)
    os.replace(staged_cert, cert)


@pytest.mark.parametrize("workers", ["1", "0"])
def test_sighup_rotates_the_certificate_without_refusing_a_connection(
    run_sockserve: Callable[..., Child], pki: PKI, tmp_path: Path, workers: str
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    PKI.write_server(pki.server, cert, key)
    server = run_sockserve(
        "run", LINES_TARGET, "--bind", "127.0.0.1:0", "--workers", workers, "--grace", "10",
        *_tls_flags(pki, cert, key),
    )  # fmt: skip
    port = server.port()
    renewed = pki.issue(HOST, "127.0.0.1")
    old_der, new_der = _der(pki.server), _der(renewed)
    with TLSLoad(port, pki.client()) as load:
        load.wait(lambda seen: len(seen) >= 10, "before the reload")
        _replace_files(renewed, cert, key)
        mark = server.mark()
        server.signal(signal.SIGHUP)
        if workers == "0":
            server.wait_for(r"SIGHUP: TLS certificate reloaded on 1 listener\(s\)", start=mark)
        else:
            server.wait_for(r"reload complete: 1 new worker\(s\), 1 old", start=mark)
            # The old worker drains: it may still serve what it had accepted.
            server.wait_for(r"worker \d \(pid \d+\) stopped", start=mark)
        settled = len(load.certificates)
        load.wait(lambda seen: len(seen) >= settled + 10, "after the reload")
    assert load.errors == []  # no refused connection, no failed handshake
    assert set(load.certificates[:10]) == {old_der}
    # From then on only the new certificate (the one connection the client may
    # have had under way when the log line came aside).
    assert set(load.certificates[settled + 1 :]) == {new_der}
    assert server.stop() == 0
    assert "Traceback" not in server.output


@pytest.mark.parametrize("workers", ["1", "0"])
def test_a_reload_with_broken_certificate_files_keeps_the_old_certificate(
    run_sockserve: Callable[..., Child], pki: PKI, tmp_path: Path, workers: str
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    PKI.write_server(pki.server, cert, key)
    server = run_sockserve(
        "run", LINES_TARGET, "--bind", "127.0.0.1:0", "--workers", workers,
        *_tls_flags(pki, cert, key),
    )  # fmt: skip
    port = server.port()
    other = pki.issue(HOST)
    key.write_bytes(other.private_key_pem.bytes())  # a key that does not match the certificate
    mark = server.mark()
    server.signal(signal.SIGHUP)
    [line] = server.wait_for(
        r"ERROR .*(reload failed|configuration rejected), keeping the current .*$", start=mark
    )
    assert "KEY_VALUES_MISMATCH" in line[0]  # the log says what is wrong
    for _ in range(3):
        with tls_client(("127.0.0.1", port), pki.client()) as client:
            assert ask(client, b"still\n") == b"still\n"
            assert client.getpeercert(binary_form=True) == _der(pki.server)
    assert server.stop() == 0
    assert "Traceback" not in server.output
