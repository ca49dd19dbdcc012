"""Record real PROXY headers from HAProxy into ``data/`` (run by hand, not by the tests).

    python3 tests/protocols/capture_haproxy.py

Starts HAProxy (the Debian package; ``apt-get install haproxy``) in front of a
small recording server, makes one client connection per case and saves what
the server received, the PROXY header followed by the client's first bytes,
as ``data/haproxy-*.bin``. The expected values go to ``data/haproxy.json``,
written from what the *client* knows (its own address, what it negotiated over
TLS, the frontend it dialled), never from this project's parser, so the tests
check the parser against an independent implementation.

The cases: ``send-proxy`` and ``send-proxy-v2`` over IPv4, IPv6 and a Unix
socket; a TLS frontend with ``proxy-v2-options`` for every TLV HAProxy can
send (SSL with client certificate, ALPN, authority, unique id, CRC32C); and
the LOCAL header of HAProxy's own health checks (``check-send-proxy``).
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
TIMEOUT = 10.0
# What the client sends after the header: the application's first bytes.
PAYLOAD = b"hello\r\n"

CONFIG = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe_v1
    bind 127.0.0.1:{v1}
    bind [::1]:{v1}
    bind unix@{tmp}/v1.sock
    default_backend be_v1
frontend fe_v2
    bind 127.0.0.1:{v2}
    bind [::1]:{v2}
    bind unix@{tmp}/v2.sock
    default_backend be_v2
frontend fe_tls
    bind 127.0.0.1:{tls} {tls_options}
    unique-id-format %ci:%cp_%fi:%fp
    default_backend be_tls
backend be_v1
    server s 127.0.0.1:{record} send-proxy
backend be_v2
    server s 127.0.0.1:{record} send-proxy-v2
backend be_tls
    server s 127.0.0.1:{record} send-proxy-v2 proxy-v2-options """
CONFIG += "ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id\n"
CONFIG += """
backend be_check_v1
    server s 127.0.0.1:{check_v1} send-proxy check check-send-proxy inter 1s
backend be_check_v2
    server s 127.0.0.1:{check_v2} send-proxy-v2 check check-send-proxy inter 1s
"""


TLS_OPTIONS = "ssl crt {tmp}/proxy.pem ca-file {tmp}/ca.pem verify optional alpn h2,http/1.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_certificates(tmp: Path) -> None:
    """A CA, the proxy's certificate (CN proxy.test) and a client's (CN client.example)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca",
    )  # fmt: skip
    for name, cn in (("proxy", "proxy.test"), ("client", "client.example")):
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={cn}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-sha256", "-days", "2", "-out", f"{name}.crt",
        )  # fmt: skip
        (tmp / f"{name}.pem").write_bytes(
            (tmp / f"{name}.crt").read_bytes() + (tmp / f"{name}.key").read_bytes()
        )


class Recorder(threading.Thread):
    """Accepts connections and queues the bytes of each, up to PAYLOAD or the peer's close."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.received: queue.Queue[bytes] = queue.Queue()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT)
                data = b""
                while not data.endswith(PAYLOAD):
                    try:
                        chunk = conn.recv(4096)
                    except ConnectionResetError:
                        chunk = b""  # health checks end with a reset
                    if not chunk:
                        break
                    data += chunk
                self.received.put(data)


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # a one-off script waiting for another process to bind


def exchange(sock: socket.socket, recorder: Recorder) -> bytes:
    sock.sendall(PAYLOAD)
    return recorder.received.get(timeout=TIMEOUT)


def main() -> int:
    haproxy = shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if haproxy is None:
        print("haproxy is not installed", file=sys.stderr)
        return 1
    ports = {name: free_port() for name in ("v1", "v2", "tls", "record", "check_v1", "check_v2")}
    recorder, check_v1, check_v2 = (
        Recorder(ports[name]) for name in ("record", "check_v1", "check_v2")
    )
    for thread in (recorder, check_v1, check_v2):
        thread.start()
    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        make_certificates(tmp)
        tls_options = TLS_OPTIONS.format(tmp=tmp)
        (tmp / "haproxy.cfg").write_text(CONFIG.format(tmp=tmp, tls_options=tls_options, **ports))
        proc = subprocess.Popen([haproxy, "-db", "-f", str(tmp / "haproxy.cfg")])
        try:
            wait_for_port(ports["tls"])
            record_plain(cases, ports, tmp, recorder)
            record_tls(cases, ports, tmp, recorder)
            # Health checks: the first check after start-up.
            cases["haproxy-check-send-proxy-v1"] = {
                "data": check_v1.received.get(timeout=TIMEOUT),
                "comment": "HAProxy health check, send-proxy: a v1 line, the check's addresses",
                "expect": {"version": 1, "command": "PROXY", "family": "INET", "proxied": True},
            }
            cases["haproxy-check-send-proxy-v2"] = {
                "data": check_v2.received.get(timeout=TIMEOUT),
                "comment": "HAProxy health check, send-proxy-v2: LOCAL, UNSPEC, no addresses",
                "expect": {
                    "version": 2, "command": "LOCAL", "family": "UNSPEC", "transport": "UNSPEC",
                    "source": None, "destination": None, "length": 16, "proxied": False,
                },
            }  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=TIMEOUT)
    manifest = {}
    for case, entry in sorted(cases.items()):
        (DATA / f"{case}.bin").write_bytes(entry.pop("data"))
        manifest[f"{case}.bin"] = entry
    (DATA / "haproxy.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(manifest)} cases to {DATA}")
    return 0


def record_plain(
    cases: dict[str, Any], ports: dict[str, int], tmp: Path, recorder: Recorder
) -> None:
    for version in (1, 2):
        port = ports[f"v{version}"]
        for family, host in (("INET", "127.0.0.1"), ("INET6", "::1")):
            with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
                client = sock.getsockname()
                data = exchange(sock, recorder)
            source: list[Any] = [client[0], client[1]]
            destination: list[Any] = [host, port]
            if family == "INET6":
                source += [0, 0]
                destination += [0, 0]
            suffix = "tcp4" if family == "INET" else "tcp6"
            cases[f"haproxy-send-proxy{'-v2' if version == 2 else ''}-{suffix}"] = {
                "data": data,
                "comment": f"HAProxy send-proxy{'-v2' if version == 2 else ''}, client over {host}",
                "expect": {
                    "version": version, "command": "PROXY", "family": family,
                    "transport": "STREAM", "source": source, "destination": destination,
                    "length": len(data) - len(PAYLOAD), "tlvs": [], "proxied": True,
                },
            }  # fmt: skip
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(str(tmp / f"v{version}.sock"))
            data = exchange(sock, recorder)
        expect: dict[str, Any] = {
            "version": version, "command": "PROXY" if version == 1 else "LOCAL",
            "family": "UNSPEC", "transport": "UNSPEC", "source": None, "destination": None,
            "length": len(data) - len(PAYLOAD), "proxied": False,
        }  # fmt: skip
        cases[f"haproxy-send-proxy{'-v2' if version == 2 else ''}-unix"] = {
            "data": data,
            "comment": "HAProxy relaying a Unix socket client: "
            + ("UNKNOWN" if version == 1 else "LOCAL + UNSPEC (HAProxy sends no AF_UNIX)"),
            "expect": expect,
        }


def record_tls(cases: dict[str, Any], ports: dict[str, int], tmp: Path, recorder: Recorder) -> None:
    context = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    context.load_cert_chain(str(tmp / "client.pem"))
    context.set_alpn_protocols(["h2"])
    context.check_hostname = False
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # so the cipher has an OpenSSL name
    port = ports["tls"]
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="app.example.com") as sock,
    ):
        client = sock.getsockname()
        cipher, version, _ = sock.cipher() or ("", "", 0)
        alpn = sock.selected_alpn_protocol()
        data = exchange(sock, recorder)
    cases["haproxy-send-proxy-v2-tls-tlvs"] = {
        "data": data,
        "comment": "HAProxy TLS frontend, client certificate, proxy-v2-options with every TLV",
        "expect": {
            "version": 2, "command": "PROXY", "family": "INET", "transport": "STREAM",
            "source": [client[0], client[1]], "destination": ["127.0.0.1", port],
            "length": len(data) - len(PAYLOAD), "proxied": True,
            "alpn": alpn, "authority": "app.example.com",
            "unique_id": f"{client[0]}:{client[1]}_127.0.0.1:{port}",
            "crc32c": True,
            "ssl": {
                "client": 0x07, "verify": 0, "version": version, "cn": "client.example",
                "cipher": cipher, "sig_alg": "RSA-SHA256", "key_alg": "RSA2048",
                "client_cert_verified": True,
            },
        },
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
