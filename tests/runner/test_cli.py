"""The ``sockserve`` command: run as ``python -m sockserve`` in a subprocess, plus its parts.

A server is ready when it logs its "listening on" line, so the tests read that
line from its stderr (with a deadline) instead of sleeping. The child is the
``sockserve`` fixture's (``helpers.processes.Child``).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import connect, round_trip
from helpers.net import TIMEOUT
from helpers.processes import run, sockserve_argv
from sockserve import (
    AsyncTCPServer,
    BaseRequestHandler,
    TCPServer,
    ThreadPoolUDPServer,
    __version__,
    cli,
)
from sockserve.core.addresses import parse_bind_spec
from sockserve.exitcodes import ExitCode
from sockserve.runner import listeners as listeners_module
from sockserve.runner.listeners import ListenerError, close_listeners, open_listeners
from sockserve.runner.settings import RunConfig
from sockserve.runner.signals import SignalInbox
from sockserve.runner.worker import WorkerLoop, build_servers
from sockserve.services import SERVICES
from sockserve.testing import serving


def run_sockserve(*args: str) -> subprocess.CompletedProcess[str]:
    """``sockserve ARGS``, expected to exit by itself."""
    return run(sockserve_argv(*args))


def tcp_client(port: int, host: str = "127.0.0.1") -> socket.socket:
    return connect((host, port))


def echo_over_tcp(port: int, payload: bytes = b"hello, echo\n", host: str = "127.0.0.1") -> None:
    assert round_trip((host, port), payload) == payload


def assert_clean_stop(output: str, signal_name: str) -> None:
    assert f"INFO sockserve.worker: received {signal_name}: stopping\n" in output
    assert output.endswith("INFO sockserve.cli: stopped\n")
    assert "Traceback" not in output
    assert "Warning" not in output


def listening_spec(port_spec: str) -> tuple[str, int]:
    host, _, port = port_spec.partition("://")[2].rpartition(":")
    return host.strip("[]"), int(port)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a listening socket without SO_REUSEADDR."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# -- running and stopping ---------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_echo_serves_then_stops_cleanly_on_signal(sockserve: Any, signum: signal.Signals) -> None:
    server = sockserve("echo", "--bind", "127.0.0.1:0")
    [spec] = server.listening()
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", spec)
    port = server.port()
    assert port != 0  # the port really bound, not the one asked for
    echo_over_tcp(port)
    # A client still connected must not hold up the stop.
    with tcp_client(port) as idle_client:
        echo_over_tcp(port, b"second client\n")
        assert server.stop(signum) == ExitCode.OK
        assert idle_client.recv(1024) == b""  # our connection was closed with the process
    assert_clean_stop(server.output, signum.name)


def test_tcp_and_udp_at_once(sockserve: Any) -> None:
    server = sockserve("echo", "--bind", "127.0.0.1:0", "--bind", "udp://127.0.0.1:0")
    tcp_spec, udp_spec = server.listening(2)
    assert tcp_spec.startswith("tcp://") and udp_spec.startswith("udp://")
    echo_over_tcp(listening_spec(tcp_spec)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(b"datagram", listening_spec(udp_spec))
        assert client.recv(1024) == b"datagram"
    assert server.stop() == ExitCode.OK
    assert_clean_stop(server.output, "SIGTERM")


def test_unix_socket_is_served_and_removed_on_stop(sockserve: Any, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    server = sockserve("echo", "--bind", f"unix:{path}")
    assert server.listening() == [f"unix:{path}"]
    assert round_trip(str(path), b"local\n") == b"local\n"
    assert server.stop() == ExitCode.OK
    assert not path.exists()
    assert_clean_stop(server.output, "SIGTERM")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_is_a_subcommand(sockserve: Any, service: str) -> None:
    server = sockserve(service)  # the default bind: 127.0.0.1, a free port
    [spec] = server.listening()
    assert spec.startswith("tcp://127.0.0.1:")
    assert f"INFO sockserve.cli: {service} listening on {spec}\n" in server.output
    with tcp_client(server.port()) as client:
        client.shutdown(socket.SHUT_WR)
        reply = client.recv(4096)
    # echo and discard answer an empty request with nothing; the others always talk.
    assert bool(reply) == (service in ("daytime", "chargen"))
    assert server.stop() == ExitCode.OK
    assert_clean_stop(server.output, "SIGTERM")


# -- failures -----------------------------------------------------------------------


def test_port_in_use_is_one_line_and_exit_bind(busy_port: int) -> None:
    result = run_sockserve("echo", "--bind", f"127.0.0.1:{busy_port}")
    assert result.returncode == ExitCode.BIND
    assert result.stderr == (
        f"sockserve: error: cannot bind tcp://127.0.0.1:{busy_port}: "
        f"[Errno {errno.EADDRINUSE}] {os.strerror(errno.EADDRINUSE)}\n"
    )


def test_binding_is_all_or_nothing(busy_port: int, tmp_path: Path) -> None:
    path = tmp_path / "first.sock"
    result = run_sockserve("echo", "--bind", f"unix:{path}", "--bind", f"127.0.0.1:{busy_port}")
    assert result.returncode == ExitCode.BIND
    assert result.stderr.splitlines() == [
        f"sockserve: error: cannot bind tcp://127.0.0.1:{busy_port}: "
        f"[Errno {errno.EADDRINUSE}] {os.strerror(errno.EADDRINUSE)}"
    ]
    assert not path.exists()  # the listener bound first was closed


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("127.0.0.1:99999", "port 99999 is out of range 0-65535"),
        ("[::1:80", "'[' without a closing ']'"),
        ("nohost", "missing ':PORT'"),
    ],
)
def test_bad_spec_is_a_usage_error(spec: str, problem: str) -> None:
    result = run_sockserve("echo", "--bind", "127.0.0.1:0", "--bind", spec)
    assert result.returncode == ExitCode.USAGE
    [line] = result.stderr.splitlines()
    assert line.startswith(f"sockserve: error: invalid bind address {spec!r}: ")
    assert problem in line


def test_version() -> None:
    result = run_sockserve("--version")
    assert result.returncode == 0
    assert result.stdout == f"sockserve {__version__}\n"


# -- the parts, in-process ------------------------------------------------------------


def parse(*args: str) -> RunConfig:
    return cli.config_from_args(cli.build_parser().parse_args(args), environ={})


def test_config_defaults_to_loopback_tcp_on_a_free_port() -> None:
    config = parse("chargen")
    assert config.target == "chargen"
    assert config.bind == []  # resolved to DEFAULT_BIND (or systemd's sockets) when opening
    assert config.workers == 0  # the service shortcuts serve in-process
    assert config.log_level == "info"


def test_config_keeps_every_bind_in_order() -> None:
    config = parse("echo", "--bind", "udp://127.0.0.1:7", "--bind", ":7", "--log-level", "debug")
    assert config.bind == ["udp://127.0.0.1:7", ":7"]
    assert config.log_level == "debug"


def test_fd_specs_serve_an_inherited_socket(sockserve: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as inherited:
        port = inherited.getsockname()[1]
        fd = inherited.fileno()
        os.set_inheritable(fd, True)
        server = sockserve("echo", "--bind", f"fd://{fd}", pass_fds=(fd,))
        [spec] = server.listening()
        assert spec == f"tcp://127.0.0.1:{port}"
    echo_over_tcp(port)
    assert server.stop() == ExitCode.OK


def test_open_listeners_closes_what_it_bound_when_one_fails(busy_port: int, tmp_path: Path) -> None:
    path = tmp_path / "first.sock"
    specs = [parse_bind_spec(f"unix:{path}"), parse_bind_spec(f"127.0.0.1:{busy_port}")]
    with pytest.raises(ListenerError) as caught:
        open_listeners(specs)
    assert caught.value.spec == specs[1]
    assert isinstance(caught.value.error, OSError)
    assert caught.value.error.errno == errno.EADDRINUSE
    assert not path.exists()


@pytest.mark.skipif(not socket.has_ipv6, reason="needs IPv6")
def test_all_addresses_accepts_ipv4_and_ipv6_clients() -> None:
    [listener] = open_listeners([parse_bind_spec(":0")])
    try:
        assert re.fullmatch(r"tcp://:\d+", str(listener.spec))
        port = listener.spec.inet_address[1]
        [server] = build_servers(parse("echo"), [listener])
        with serving(server):
            assert server.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
            echo_over_tcp(port)  # IPv4, through the IPv6 socket
            echo_over_tcp(port, host="::1")
    finally:
        close_listeners([listener])


def test_all_addresses_falls_back_to_ipv4_when_the_kernel_has_no_ipv6(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_socket = socket.socket

    def no_ipv6(family: int = socket.AF_INET, *args: Any, **kwargs: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return real_socket(family, *args, **kwargs)

    monkeypatch.setattr(listeners_module.socket, "socket", no_ipv6)
    [listener] = open_listeners([parse_bind_spec(":0", ipv6=True)])
    monkeypatch.undo()
    try:
        assert listener.sock.family == socket.AF_INET
        assert listener.spec.address == ("0.0.0.0", listener.sock.getsockname()[1])
    finally:
        close_listeners([listener])


def test_signal_inbox_records_the_signal_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with SignalInbox([signal.SIGTERM]) as inbox:
        os.kill(os.getpid(), signal.SIGTERM)
        inbox.wait(TIMEOUT)  # returns: the signal woke it
        assert inbox.take() == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def test_signal_inbox_wakes_from_another_thread() -> None:
    with SignalInbox([signal.SIGTERM]) as inbox:
        threading.Thread(target=inbox.wake).start()
        inbox.wait(TIMEOUT)
        assert inbox.take() == []


class _CrashingServer(TCPServer):
    def serve_forever(self, poll_interval: float | None = 0.5) -> None:
        raise RuntimeError("boom")


def test_a_server_that_dies_stops_the_rest_with_exit_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    healthy = TCPServer(("127.0.0.1", 0), BaseRequestHandler)
    broken = _CrashingServer(("127.0.0.1", 0), BaseRequestHandler)
    with SignalInbox([signal.SIGTERM]) as inbox:
        reason = WorkerLoop([healthy, broken], inbox, grace=1.0).run()
    assert reason == "failure"
    assert healthy.socket.fileno() == -1  # closed along with the broken one
    assert any("failed" in r.getMessage() for r in caplog.records if r.name == "sockserve.worker")


def test_a_service_with_the_async_worker_class_serves_its_coroutine_handler() -> None:
    """``sockserve echo --worker-class async``: streams get the async handler, UDP the pool."""
    listeners = open_listeners(
        [parse_bind_spec("127.0.0.1:0"), parse_bind_spec("udp://127.0.0.1:0")]
    )
    try:
        stream, datagram = build_servers(parse("echo", "--worker-class", "async"), listeners)
        assert isinstance(stream, AsyncTCPServer)
        assert stream.RequestHandlerClass is SERVICES["echo"].async_stream
        assert isinstance(datagram, ThreadPoolUDPServer)
        assert datagram.RequestHandlerClass is SERVICES["echo"].datagram
        with serving(stream):
            echo_over_tcp(stream.server_address[1])
        datagram.server_close()
    finally:
        close_listeners(listeners)
