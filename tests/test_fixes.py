"""The production defects of the stdlib's socketserver that sockserve fixes, one test each.

Prompt and deadlock-free shutdown, errors logged with the client's address, the
listen backlog, many simultaneous clients, Unix socket files cleaned up, no
busy loop when out of descriptors, and stdlib subclasses (http.server,
xmlrpc.server) running on top of sockserve.
"""

from __future__ import annotations

import errno
import functools
import http.client
import http.server
import logging
import os
import queue
import re
import selectors
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import sockserve
import sockserve.testing
from helpers.net import TIMEOUT, Net, SelectWatch

HELPERS = Path(__file__).resolve().parent / "helpers"
SRC = Path(__file__).resolve().parent.parent / "src"
LOCALHOST = ("127.0.0.1", 0)


class Echo(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


def _recv_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _round_trip(net: Net, address: Any, line: bytes = b"ping\n") -> bytes:
    client = net.tcp_client(address)
    client.sendall(line)
    return _recv_line(client)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _wait_for_child(pid: int, timeout: float = TIMEOUT) -> int:
    """Wait (bounded) for a forked child; return its exit code."""
    pidfd = os.pidfd_open(pid)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            assert selector.select(timeout), f"child {pid} still running after {timeout} s"
    finally:
        os.close(pidfd)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# -- shutdown -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [sockserve.TCPServer, sockserve.ThreadingTCPServer])
def test_shutdown_is_prompt_whatever_the_poll_interval(
    net: Net, select_watch: SelectWatch, cls: type[Any]
) -> None:
    server = net.server(cls(LOCALHOST, Echo))
    thread = net.serve(server, poll_interval=60)
    assert _round_trip(net, server.server_address) == b"ping\n"
    assert select_watch.wait_until_blocked()  # the loop waits for its next request

    started = time.monotonic()
    server.shutdown()
    elapsed = time.monotonic() - started
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert elapsed < 2.0, f"shutdown() took {elapsed:.2f} s with poll_interval=60"


def test_shutdown_from_a_handler_on_the_serving_thread_does_not_deadlock(net: Net) -> None:
    returned = threading.Event()

    class StopsTheServer(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            if line == b"stop\n":
                self.server.shutdown()  # the stdlib waits here forever
                returned.set()
            self.wfile.write(line)

    server = net.server(sockserve.TCPServer(LOCALHOST, StopsTheServer))
    thread = net.serve(server, poll_interval=60)
    assert _round_trip(net, server.server_address, b"stop\n") == b"stop\n"
    thread.join(TIMEOUT)
    assert returned.is_set()
    assert not thread.is_alive(), "serve_forever did not return after shutdown() in a handler"

    # The stop request was consumed: the server can serve again.
    again = net.serve(server, poll_interval=60)
    assert _round_trip(net, server.server_address, b"again\n") == b"again\n"
    net.stop(server)
    assert not again.is_alive()


def test_shutdown_requested_before_serve_forever_makes_it_return_at_once(net: Net) -> None:
    server = net.server(sockserve.TCPServer(LOCALHOST, Echo))
    requested = threading.Event()
    wake = server.wake_loop

    def wake_and_tell() -> None:  # shutdown() sets the stop flag, then wakes the loop
        wake()
        requested.set()

    server.wake_loop = wake_and_tell  # type: ignore[method-assign]
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    assert requested.wait(TIMEOUT)
    assert stopper.is_alive()  # shutdown() waits for a serve_forever to end, as in the stdlib

    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 60})
    started = time.monotonic()
    serving.start()
    serving.join(TIMEOUT)
    elapsed = time.monotonic() - started
    stopper.join(TIMEOUT)

    assert not serving.is_alive()
    assert not stopper.is_alive()
    assert elapsed < 2.0, f"serve_forever ran {elapsed:.2f} s after an earlier shutdown()"


# -- handle_error and logging ------------------------------------------------------------------


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="sockserve.server")
    return caplog


def _server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sockserve.server"]


@pytest.mark.parametrize("cls", [sockserve.TCPServer, sockserve.ThreadingTCPServer])
def test_handler_exception_is_logged_with_client_address_and_traceback(
    net: Net, server_log: pytest.LogCaptureFixture, cls: type[Any]
) -> None:
    class Fails(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            raise ValueError("kaput")

    server = net.server(cls(LOCALHOST, Fails))
    client = net.tcp_client(server.server_address)
    client.sendall(b"hi\n")
    server.handle_request()
    server.server_close()  # joins the request thread of the threading server

    records = _server_records(server_log)
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert f"127.0.0.1:{client.getsockname()[1]}" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert "ValueError: kaput" in server_log.text
    assert "Traceback" in server_log.text


@pytest.mark.parametrize(
    "error", [ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError]
)
def test_client_gone_is_one_info_line_without_traceback(
    net: Net, server_log: pytest.LogCaptureFixture, error: type[OSError]
) -> None:
    class ClientVanishes(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            raise error(error.__name__)

    server = net.server(sockserve.TCPServer(LOCALHOST, ClientVanishes))
    client = net.tcp_client(server.server_address)
    client.sendall(b"hi\n")
    server.handle_request()

    records = _server_records(server_log)
    assert [r.levelno for r in records] == [logging.INFO]
    assert not records[0].exc_info
    assert f"127.0.0.1:{client.getsockname()[1]}" in records[0].getMessage()
    assert "Traceback" not in server_log.text


def test_a_real_connection_reset_is_one_info_line(
    net: Net, server_log: pytest.LogCaptureFixture
) -> None:
    server = net.server(sockserve.TCPServer(LOCALHOST, Echo))
    client = socket.create_connection(server.server_address, timeout=TIMEOUT)
    port = client.getsockname()[1]
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # linger 0: the server's read of the queued connection gets a reset
    server.handle_request()

    records = _server_records(server_log)
    assert [r.levelno for r in records] == [logging.INFO]
    assert not records[0].exc_info
    assert f"127.0.0.1:{port}" in records[0].getMessage()


def test_a_subclass_handle_error_still_wins(net: Net, server_log: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[Any, Any, type[BaseException] | None]] = []

    class OwnErrors(sockserve.TCPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            seen.append((request, client_address, sys.exc_info()[0]))

    class Fails(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            raise RuntimeError("mine")

    server = net.server(OwnErrors(LOCALHOST, Fails))
    client = net.tcp_client(server.server_address)
    server.handle_request()

    assert len(seen) == 1
    request, client_address, exc_type = seen[0]
    assert client_address == client.getsockname()
    assert isinstance(request, socket.socket)
    assert exc_type is RuntimeError
    assert _server_records(server_log) == []


# -- the listen backlog ------------------------------------------------------------------


class ListenSpy:
    """Stands in for a server's socket and records the backlog passed to listen()."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.backlogs: list[int] = []

    def listen(self, backlog: int) -> None:
        self.backlogs.append(backlog)
        self._sock.listen(backlog)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _activated_backlogs(net: Net, cls: type[Any]) -> list[int]:
    server = net.server(cls(LOCALHOST, Echo, bind_and_activate=False))
    server.server_bind()
    spy = server.socket = ListenSpy(server.socket)
    server.server_activate()
    client = net.tcp_client(server.server_address)  # listening for real
    client.sendall(b"listening\n")
    server.handle_request()
    assert _recv_line(client) == b"listening\n"
    return spy.backlogs


def test_the_default_backlog_is_somaxconn(net: Net) -> None:
    assert sockserve.TCPServer.request_queue_size == socket.SOMAXCONN
    assert sockserve.ThreadingTCPServer.request_queue_size == socket.SOMAXCONN
    assert _activated_backlogs(net, sockserve.TCPServer) == [socket.SOMAXCONN]


def test_a_subclass_backlog_is_still_used(net: Net) -> None:
    class Small(sockserve.TCPServer):
        request_queue_size = 7

    assert _activated_backlogs(net, Small) == [7]


# -- many clients at once --------------------------------------------------------------------


def test_a_hundred_simultaneous_clients_are_all_served(net: Net) -> None:
    clients = 100
    server = net.server(sockserve.ThreadingTCPServer(LOCALHOST, Echo))
    net.serve(server)
    barrier = threading.Barrier(clients, timeout=TIMEOUT)
    replies: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            barrier.wait()
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as sock:
                sock.sendall(f"client {n}\n".encode())
                replies[n] = _recv_line(sock)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 3 * TIMEOUT
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert replies == {n: f"client {n}\n".encode() for n in range(clients)}


# -- Unix socket files ---------------------------------------------------------------------

UNIX_SERVERS = [sockserve.UnixStreamServer, sockserve.UnixDatagramServer]


class DatagramEcho(sockserve.DatagramRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.read())


def _unix_server(net: Net, cls: type[Any], path: Path) -> Any:
    handler = Echo if cls.socket_type == socket.SOCK_STREAM else DatagramEcho
    return net.server(cls(str(path), handler))


def _unix_round_trip(server: Any, tmp_path: Path) -> bytes:
    """One request served by ``handle_request``; returns the reply."""
    if server.socket_type == socket.SOCK_STREAM:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(server.server_address)
            sock.sendall(b"unix\n")
            server.handle_request()
            return _recv_line(sock)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind(str(tmp_path / f"client-{uuid.uuid4().hex[:8]}.sock"))
        sock.sendto(b"unix\n", server.server_address)
        server.handle_request()
        return sock.recv(4096)


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_server_close_removes_the_socket_file(net: Net, tmp_path: Path, cls: type[Any]) -> None:
    path = tmp_path / "server.sock"
    server = _unix_server(net, cls, path)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert _unix_round_trip(server, tmp_path) == b"unix\n"
    server.server_close()
    assert not path.exists()
    # A new server can bind the same path at once: nothing stale is left behind.
    again = _unix_server(net, cls, path)
    assert _unix_round_trip(again, tmp_path) == b"unix\n"


@pytest.mark.parametrize("replacement", ["socket", "regular file"])
@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_server_close_keeps_a_file_that_replaced_its_own(
    net: Net, tmp_path: Path, cls: type[Any], replacement: str
) -> None:
    path = tmp_path / "server.sock"
    server = _unix_server(net, cls, path)
    path.unlink()
    if replacement == "socket":
        other = net.closing(socket.socket(socket.AF_UNIX, server.socket_type))
        other.bind(str(path))
    else:
        path.write_text("not a socket of the server")
    inode = path.stat().st_ino

    server.server_close()

    assert path.exists()
    assert path.stat().st_ino == inode


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_a_server_that_fails_to_bind_keeps_the_file_of_the_one_that_did(
    net: Net, tmp_path: Path, cls: type[Any]
) -> None:
    path = tmp_path / "server.sock"
    first = _unix_server(net, cls, path)
    with pytest.raises(OSError, match="Address already in use"):
        _unix_server(net, cls, path)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert _unix_round_trip(first, tmp_path) == b"unix\n"


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_a_forked_child_closing_the_server_keeps_the_parents_file(
    net: Net, tmp_path: Path, cls: type[Any]
) -> None:
    path = tmp_path / "server.sock"
    server = _unix_server(net, cls, path)
    pid = os.fork()
    if pid == 0:  # the child: close its copy of the server, never return into pytest
        code = 1
        try:
            server.server_close()
            code = 0
        finally:
            os._exit(code)
    assert _wait_for_child(pid) == 0
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert _unix_round_trip(server, tmp_path) == b"unix\n"  # still the parent's, still served
    server.server_close()
    assert not path.exists()


@pytest.mark.parametrize("cls", UNIX_SERVERS)
def test_an_abstract_socket_has_no_file_and_closes_cleanly(net: Net, cls: type[Any]) -> None:
    name = f"\0sockserve-test-{uuid.uuid4().hex}"
    server = _unix_server(net, cls, name)  # type: ignore[arg-type]
    assert server.server_address == name.encode()  # Linux reports abstract names as bytes
    server.server_close()
    assert server.socket.fileno() == -1


# -- bind errors -------------------------------------------------------------------------------


def test_a_bind_error_names_the_address(net: Net) -> None:
    taken = net.server(sockserve.TCPServer(LOCALHOST, Echo))
    host, port = taken.server_address
    with pytest.raises(OSError) as caught:
        sockserve.TCPServer((host, port), Echo)
    assert caught.value.errno == errno.EADDRINUSE
    assert any(f"{host}:{port}" in note for note in getattr(caught.value, "__notes__", []))


# -- datagram servers closing with requests in flight -------------------------------------


class CloseSpy:
    """Stands in for a datagram server's socket; records when it is closed."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.mark.parametrize(
    "cls",
    [
        sockserve.ThreadingUDPServer,
        sockserve.ThreadingUnixDatagramServer,
        sockserve.ThreadPoolUDPServer,
    ],
)
def test_server_close_lets_datagram_handlers_in_flight_reply(
    net: Net, tmp_path: Path, server_log: pytest.LogCaptureFixture, cls: type[Any]
) -> None:
    """``block_on_close`` waits for request threads, so their replies must still go out.

    Datagram handlers reply through the server's own socket. If ``server_close``
    closes it before waiting for them, the reply fails with EBADF and is lost.
    """
    spy: dict[str, CloseSpy] = {}

    class RepliesLate(sockserve.DatagramRequestHandler):
        def handle(self) -> None:
            # Give a server_close that closes the socket first the chance to do so.
            spy["socket"].closed.wait(0.3)
            self.wfile.write(self.rfile.read())

    unix = cls.address_family == socket.AF_UNIX
    address = str(tmp_path / "server.sock") if unix else LOCALHOST
    server = net.server(cls(address, RepliesLate))
    spy["socket"] = server.socket = CloseSpy(server.socket)
    client = net.closing(socket.socket(cls.address_family, socket.SOCK_DGRAM))
    client.settimeout(TIMEOUT)
    client.bind(str(tmp_path / "client.sock") if unix else LOCALHOST)
    client.sendto(b"in flight\n", server.server_address)

    server.handle_request()
    server.server_close()

    assert [r.getMessage() for r in _server_records(server_log)] == []
    assert client.recv(4096) == b"in flight\n"


# -- out of file descriptors ---------------------------------------------------------------


class LineReader:
    """Reads a child's pipe in a thread, so the test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first new line matching ``pattern``; fails at the deadline or end of stream."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s") from None
            if line is None:
                raise AssertionError(f"stream ended before a line matching {pattern!r}")
            self.lines.append(line)
            if match := re.search(pattern, line):
                return match

    def finish(self) -> list[str]:
        """Every line, once the stream has ended (the child exited)."""
        self._thread.join(TIMEOUT)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is not None:
                self.lines.append(line)


@pytest.fixture
def emfile_server() -> Iterator[tuple[subprocess.Popen[str], LineReader, LineReader]]:
    proc = subprocess.Popen(
        [sys.executable, str(HELPERS / "emfile_server.py"), "20"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        env=_child_env(),
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    try:
        yield proc, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        out.finish()
        err.finish()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning(
    net: Net, emfile_server: tuple[subprocess.Popen[str], LineReader, LineReader]
) -> None:
    proc, out, err = emfile_server
    assert proc.stdin is not None

    def ask(command: str, answer: str) -> re.Match[str]:
        assert proc.stdin is not None
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        return out.expect(answer)

    port = int(out.expect(r"^PORT (\d+)$").group(1))
    # Twice the descriptors the server has left; the kernel queues what it cannot accept.
    clients = [net.tcp_client(("127.0.0.1", port)) for _ in range(40)]
    err.expect(r"^WARNING sockserve\.server: accept on .*Too many open files")

    # The episode: the server stays out of descriptors for a fixed time, which
    # is what is measured (not a wait for readiness).
    episode = 1.5
    cpu_before = ask("cpu", r"^CPU ([\d.]+) ([\d.]+)$")
    time.sleep(episode)
    cpu_after = ask("cpu", r"^CPU ([\d.]+) ([\d.]+)$")
    cpu = float(cpu_after.group(1)) - float(cpu_before.group(1))
    wall = float(cpu_after.group(2)) - float(cpu_before.group(2))
    assert wall >= episode
    assert cpu / wall < 0.4, f"{cpu:.3f} s of CPU in {wall:.3f} s: the accept loop spins"

    ask("release", r"^RELEASED$")
    for client in clients:  # the held ones answer, the queued ones are accepted at last
        assert _recv_line(client) == b"served\n"
    assert _round_trip(net, ("127.0.0.1", port)) == b"served\n"

    proc.stdin.write("quit\n")
    proc.stdin.flush()
    assert proc.wait(TIMEOUT) == 0
    logged = err.finish()
    emfile = [line for line in logged if "Too many open files" in line]
    assert 1 <= len(emfile) <= 3, f"{len(emfile)} EMFILE lines: not rate-limited"
    assert all(line.startswith("WARNING ") for line in emfile)
    assert not [line for line in logged if line.startswith(("ERROR", "CRITICAL", "Traceback"))]


# -- stdlib subclasses on top of sockserve --------------------------------------------------


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _http_get(address: Any, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(address[0], address[1], timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_simple_http_request_handler_on_a_sockserve_server(net: Net, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello from sockserve\n")
    handler = functools.partial(QuietFiles, directory=str(tmp_path))
    server = net.server(sockserve.ThreadingTCPServer(LOCALHOST, handler))
    net.serve(server)
    assert _http_get(server.server_address, "/hello.txt") == (200, b"hello from sockserve\n")
    status, _body = _http_get(server.server_address, "/missing.txt")
    assert status == 404


def test_a_server_subclass_written_like_http_server(net: Net) -> None:
    """HTTPServer's pattern: server_bind calls super() and records name and port."""

    class MyHTTPServer(sockserve.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

        def server_bind(self) -> None:
            super().server_bind()
            host, port = self.server_address[:2]
            self.server_name = host
            self.server_port = port

    class WhoAmI(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{self.server.server_name}:{self.server.server_port}{self.path}".encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = net.server(MyHTTPServer(LOCALHOST, WhoAmI))
    assert server.server_port == server.server_address[1] != 0
    net.serve(server)
    expected = f"127.0.0.1:{server.server_port}/who".encode()
    assert _http_get(server.server_address, "/who") == (200, expected)


def test_http_server_and_xmlrpc_server_run_on_sockserve(tmp_path: Path) -> None:
    """The stdlib's own server classes, with socketserver replaced by sockserve."""
    (tmp_path / "hello.txt").write_bytes(b"served by http.server on sockserve\n")
    result = subprocess.run(
        [sys.executable, "-X", "dev", str(HELPERS / "stdlib_subclasses.py"), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT,
        env=_child_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "OK"
    assert "Warning" not in result.stderr, result.stderr


def test_an_exception_in_verify_request_ends_that_request_not_the_server() -> None:
    """The stdlib lets it escape serve_forever; sockserve hands it to handle_error."""
    errors: list[object] = []

    class Picky(sockserve.TCPServer):
        calls = 0

        def verify_request(self, request: object, client_address: object) -> bool:
            Picky.calls += 1
            if Picky.calls == 1:
                raise RuntimeError("verification backend down")
            return True

        def handle_error(self, request: object, client_address: object) -> None:
            errors.append(sys.exc_info()[1])

    class Echo(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline())

    with Picky(("127.0.0.1", 0), Echo) as server, sockserve.testing.serving(server, close=False):
        for attempt in (b"first\n", b"second\n"):
            with socket.create_connection(server.server_address, timeout=10) as client:
                client.sendall(attempt)
                reply = client.recv(100)
            assert reply == (b"" if attempt == b"first\n" else attempt)
        assert server.wait_for(lambda st: st.active == 0, 10)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
