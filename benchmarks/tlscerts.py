"""Certificates for the TLS workloads, made fresh for each run with the ``openssl`` command.

Why generate them: a key pair checked into the repository would be a
private key anyone can read, and one made per run costs a few milliseconds
(ECDSA) to a few hundred (RSA). Why the ``openssl`` command rather than a
Python package: it comes with the OpenSSL the load generator is built
against (Debian's ``openssl`` package, beside ``libssl-dev``), so the suite
needs no extra Python dependency; this module is the one place that knows.

What is made: a self-signed CA and a server certificate it signed, both of
the chosen key type, for ``DNS:localhost`` and ``IP:127.0.0.1``. The load
generator trusts only that CA and checks the name, as a real client would.

The key type is an option because it decides what a handshake costs the
server: an ECDSA P-256 signature is an order of magnitude cheaper than an
RSA-2048 one. ECDSA is the default, as with current ACME clients.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: key type -> the ``openssl genpkey`` arguments that make such a key
KEY_TYPES: dict[str, tuple[str, ...]] = {
    "ecdsa-p256": ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
    "rsa2048": ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
}
DEFAULT_KEY_TYPE = "rsa2048"
#: The name the client connects to, sends as SNI and verifies.
SERVER_NAME = "localhost"
#: Set in a server process's environment: where its certificate chain and key are.
CERT_ENV = "SOCKSERVE_BENCH_TLS_CERT"
KEY_ENV = "SOCKSERVE_BENCH_TLS_KEY"
VALID_DAYS = 2
OPENSSL_TIMEOUT_S = 60.0

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""


class CertificateError(RuntimeError):
    """The certificates could not be made (no ``openssl`` command, or it failed)."""


@dataclass(frozen=True)
class TLSFiles:
    """One run's certificates: what the server loads and what the client trusts."""

    directory: Path
    key_type: str
    ca: Path
    cert: Path
    key: Path
    server_name: str = SERVER_NAME

    def server_env(self) -> dict[str, str]:
        """The environment a TLS server process reads its certificate from."""
        return {CERT_ENV: str(self.cert), KEY_ENV: str(self.key)}


def openssl() -> str:
    """The ``openssl`` executable; CertificateError says what to install without it."""
    found = shutil.which("openssl")
    if found is None:
        raise CertificateError(
            "the TLS workloads make their certificates with the openssl command: "
            "apt-get install -y openssl"
        )
    return found


def _run(*args: str) -> None:
    command = [openssl(), *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CertificateError(f"{' '.join(command)} did not finish") from exc
    if done.returncode != 0:
        raise CertificateError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def generate(parent: Path, key_type: str = DEFAULT_KEY_TYPE) -> TLSFiles:
    """A new CA and server certificate in a fresh directory under ``parent``.

    The caller removes the directory when the run is over (``remove``).
    """
    if key_type not in KEY_TYPES:
        raise CertificateError(f"unknown key type {key_type!r} (known: {', '.join(KEY_TYPES)})")
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=f"{key_type}-", dir=parent))
    try:
        files = TLSFiles(
            directory=directory,
            key_type=key_type,
            ca=directory / "ca.pem",
            cert=directory / "server.pem",
            key=directory / "server.key",
        )
        ca_key, csr, extensions = directory / "ca.key", directory / "server.csr", directory / "ext"
        _run("genpkey", *KEY_TYPES[key_type], "-out", str(ca_key))
        _run(
            "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", str(VALID_DAYS),
            "-subj", "/CN=sockserve benchmark CA", "-out", str(files.ca),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        _run("genpkey", *KEY_TYPES[key_type], "-out", str(files.key))
        _run("req", "-new", "-key", str(files.key), "-subj", f"/CN={SERVER_NAME}", "-out", str(csr))
        extensions.write_text(_SERVER_EXTENSIONS)
        _run(
            "x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key),
            "-set_serial", "2", "-sha256", "-days", str(VALID_DAYS),
            "-extfile", str(extensions), "-out", str(files.cert),
        )  # fmt: skip
    except BaseException:
        remove(directory)
        raise
    return files


def remove(directory: Path) -> None:
    """Delete a run's certificates (its private keys among them)."""
    shutil.rmtree(directory, ignore_errors=True)
