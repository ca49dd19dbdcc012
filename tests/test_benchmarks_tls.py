"""The TLS side of the benchmark suite: certificates, and a load generator without OpenSSL.

The TLS workloads themselves run in the quick smoke test
(tests/test_benchmarks_smoke.py); these check what it cannot: that the
generated certificates are what a verifying client accepts (and a wrong name
is refused), and that a machine without OpenSSL's headers loses the TLS
workloads with a message saying what to install, not the whole run.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the benchmark suite is a top-level package beside src/
    sys.path.insert(0, str(REPO))

from benchmarks import cli, loadgen, tlscerts  # noqa: E402

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command makes the certificates"
)


class MemoryPair:
    """A TLS client and server joined by memory buffers: a handshake without sockets."""

    def __init__(self, client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> None:
        self.c_in, self.c_out, self.s_in, self.s_out = (ssl.MemoryBIO() for _ in range(4))
        self.client = client.wrap_bio(self.c_in, self.c_out, server_hostname=hostname)
        self.server = server.wrap_bio(self.s_in, self.s_out, server_side=True)

    def handshake(self) -> None:
        """Step both ends until both are done; a failure raises from the end that failed."""
        done = {"client": False, "server": False}
        for _ in range(20):
            for name, end in (("client", self.client), ("server", self.server)):
                if not done[name]:
                    try:
                        end.do_handshake()
                        done[name] = True
                    except ssl.SSLWantReadError:
                        pass
            self.s_in.write(self.c_out.read())
            self.c_in.write(self.s_out.read())
            if all(done.values()):
                return
        raise AssertionError(f"the handshake did not finish: {done}")


@needs_openssl
@pytest.mark.parametrize("key_type", sorted(tlscerts.KEY_TYPES))
def test_generated_certificates_pass_a_verifying_client(tmp_path: Path, key_type: str) -> None:
    files = tlscerts.generate(tmp_path, key_type)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert, files.key)
    client = ssl.create_default_context(cafile=str(files.ca))

    pair = MemoryPair(client, server, files.server_name)
    pair.handshake()
    assert pair.client.version() == "TLSv1.3"
    assert (("commonName", "localhost"),) in pair.client.getpeercert()["subject"]

    with pytest.raises(ssl.SSLCertVerificationError):
        MemoryPair(client, server, "example.org").handshake()
    tlscerts.remove(files.directory)
    assert not files.directory.exists()


def test_without_openssl_headers_the_tls_cells_are_unavailable_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = "OpenSSL's headers are missing (apt-get install -y libssl-dev)"
    monkeypatch.setattr(loadgen, "tls_missing", lambda: reason)
    availability: dict[str, dict[str, str | None]] = {
        "asyncio-protocol": {"tcp": None, "tls": None},
        "stdlib-sync": {"udp": None},
    }
    said: list[str] = []
    args = cli.parse_args(["--quick", "--workloads", "tls,pingpong"])
    assert cli.prepare_tls(args, availability, said.append) is None
    assert availability["asyncio-protocol"] == {"tcp": None, "tls": reason}
    assert availability["stdlib-sync"] == {"udp": None}
    assert any("libssl-dev" in line for line in said)


@pytest.mark.slow
def test_a_load_generator_built_without_openssl_says_what_to_install(tmp_path: Path) -> None:
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "loadgen-plain"
    subprocess.run(
        [compiler, *loadgen.CFLAGS, "-o", str(exe), *map(str, loadgen.SOURCES)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    done = subprocess.run(
        [str(exe), "churn", "--port", "9", "--ca", str(tmp_path / "ca.pem")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "apt-get install -y libssl-dev" in done.stderr


@needs_openssl
@pytest.mark.slow
def test_sockserve_tls_kinds_run_the_tls_workloads(tmp_path: Path) -> None:
    """The pool, the async server and ``sockserve run --workers 2 --certfile``, each
    verified by the load generator (CA and host name) on every TLS cell."""
    kinds = ("sockserve-pool", "sockserve-async", "sockserve-run-2")
    results = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", ",".join(kinds)]
    command += ["--workloads", "tls", "--no-plots", "--json", str(results)]
    command += ["--markdown", str(tmp_path / "report.md")]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(results.read_text())
    for kind in kinds:
        assert data["availability"][kind]["tls"] is None, data["availability"][kind]
    runs = [run for run in data["runs"] if run["server"] in kinds]
    assert {run["server"] for run in runs} == set(kinds)
    for run in runs:
        assert run.get("ok"), run
        assert run["metrics"]["tls_handshakes"] > 0, run
        assert run["metrics"]["tls_failures"] == 0, run


def test_a_sockserve_without_tls_is_unavailable_not_served_plain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--compare-rev`` against a revision from before TLS: the kind is reported
    unavailable (such a revision may accept ``ssl_context`` and serve plain bytes)."""
    from benchmarks import servers

    assert servers._tls_unavailable("sockserve-pool") is None
    real = servers.importlib.util.find_spec
    monkeypatch.setattr(
        servers.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sockserve.security.tls" else real(name, *a),
    )
    assert "no TLS" in (servers._tls_unavailable("sockserve-async") or "")
    assert servers._tls_unavailable("stdlib-threading-somaxconn") is None
    assert "no TLS setup" in (servers._tls_unavailable("sockserve-threading") or "")
