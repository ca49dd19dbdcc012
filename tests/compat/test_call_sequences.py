"""Sequences of calls the stdlib accepts, run on ``socketserver`` and on sockserve side by side.

``socketserver`` keeps no state beyond its shutdown flag, so programs call its
methods in orders a lifecycle would call wrong: serve after ``server_close()``
on a socket they put in place, serve again after ``shutdown()``, handle a
request after the loop returned, swap the listener for a TLS one. Each test
runs the same body on both modules and expects the same observation; a
sockserve-only failure here is a break of the drop-in promise.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from types import ModuleType

import pytest

import sockserve
from helpers.net import TIMEOUT

from ._both import (
    LOCALHOST,
    MODULE_IDS,
    MODULES,
    POLL,
    datagram_echo_handler,
    datagram_round_trip,
    echo_handler,
    round_trip,
    serving,
)


@pytest.fixture(params=MODULES, ids=MODULE_IDS)
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def _test_certificate() -> Path:
    """CPython's test certificate for "localhost" (the test package is required by the suite)."""
    import test

    here = Path(test.__file__).resolve().parent
    for candidate in (here / "certdata" / "keycert.pem", here / "keycert.pem"):
        if candidate.exists():
            return candidate
    raise AssertionError(f"no keycert.pem under {here}")


@pytest.mark.parametrize("name", ["TCPServer", "ThreadingTCPServer", "ForkingTCPServer"])
def test_serve_after_server_close_on_a_replaced_socket(mod: ModuleType, name: str) -> None:
    server = getattr(mod, name)(LOCALHOST, echo_handler(mod), bind_and_activate=False)
    server.server_close()
    with socket.create_server(LOCALHOST) as inherited:
        server.socket = socket.fromfd(inherited.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    server.server_address = server.socket.getsockname()
    try:
        with serving(server) as raised:
            assert round_trip(server.server_address) == b"ping\n"
        assert raised == []
    finally:
        server.server_close()


def test_serve_after_server_close_on_a_replaced_datagram_socket(mod: ModuleType) -> None:
    server = mod.UDPServer(LOCALHOST, datagram_echo_handler(mod), bind_and_activate=False)
    server.server_close()
    server.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.socket.bind(LOCALHOST)
    server.server_address = server.socket.getsockname()
    try:
        with serving(server) as raised:
            assert datagram_round_trip(server.server_address) == b"ping"
        assert raised == []
    finally:
        server.server_close()


def test_serve_forever_again_after_shutdown(mod: ModuleType) -> None:
    with mod.ThreadingTCPServer(LOCALHOST, echo_handler(mod)) as server:
        for line in (b"first\n", b"second\n"):
            with serving(server) as raised:
                assert round_trip(server.server_address, line) == line
            assert raised == []


def test_handle_request_after_serve_forever_returned(mod: ModuleType) -> None:
    with mod.TCPServer(LOCALHOST, echo_handler(mod)) as server:
        server.timeout = TIMEOUT  # handle_request gives up (handle_timeout) instead of hanging
        with serving(server):
            assert round_trip(server.server_address) == b"ping\n"
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"one more\n")
            server.handle_request()
            assert client.recv(4096) == b"one more\n"


def test_handle_request_after_server_close_on_a_replaced_socket(mod: ModuleType) -> None:
    server = mod.TCPServer(LOCALHOST, echo_handler(mod), bind_and_activate=False)
    server.server_close()
    server.socket = socket.create_server(LOCALHOST)
    server.server_address = server.socket.getsockname()
    server.timeout = TIMEOUT
    try:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"ping\n")
            server.handle_request()
            assert client.recv(4096) == b"ping\n"
    finally:
        server.server_close()


def test_the_tls_recipe_replaces_the_listener(mod: ModuleType) -> None:
    """The recipe ``httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)``."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(_test_certificate())
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE  # the wrapping is under test, not the chain
    with mod.ThreadingTCPServer(LOCALHOST, echo_handler(mod)) as server:
        server.socket = server_context.wrap_socket(server.socket, server_side=True)
        with serving(server) as raised:
            plain = socket.create_connection(server.server_address, timeout=TIMEOUT)
            with client_context.wrap_socket(plain, server_hostname="localhost") as client:
                client.sendall(b"secret\n")
                reply = b""
                while not reply.endswith(b"\n") and (chunk := client.recv(4096)):
                    reply += chunk
                assert client.version() is not None  # a TLS session, not plain text
        assert reply == b"secret\n"
        assert raised == []


def test_server_close_while_serving_then_shutdown(mod: ModuleType) -> None:
    """Closing first and stopping second (a common ordering slip) still stops the loop."""
    server = mod.ThreadingTCPServer(LOCALHOST, echo_handler(mod))
    with serving(server) as raised:
        assert round_trip(server.server_address) == b"ping\n"
        server.server_close()
    assert raised == []
    server.server_close()


def test_serve_forever_on_a_closed_socket_raises_value_error(mod: ModuleType) -> None:
    """Nothing was put in place of the closed socket: the stdlib's error, not a state error."""
    server = mod.TCPServer(LOCALHOST, echo_handler(mod))
    server.server_close()
    with pytest.raises(ValueError):
        server.serve_forever(poll_interval=POLL)
    server.server_close()


def test_shutdown_called_before_the_loop_starts_stops_it_at_once(mod: ModuleType) -> None:
    """A shutdown() that wins the race against the serving thread's start is not lost."""
    with mod.TCPServer(LOCALHOST, echo_handler(mod)) as server:
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        # Whether or not the stopper has set the flag yet, the loop below must
        # end once it has: serve_forever in a thread, joined with a bound.
        loop = threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True)
        loop.start()
        stopper.join(TIMEOUT)
        loop.join(TIMEOUT)
        assert not stopper.is_alive()
        assert not loop.is_alive()


# -- sockserve's own view of those sequences --------------------------------


def test_the_state_describes_serving_again_after_close() -> None:
    server = sockserve.TCPServer(LOCALHOST, echo_handler(sockserve), bind_and_activate=False)
    server.server_close()
    assert server.state is sockserve.State.CLOSED
    server.socket = socket.create_server(LOCALHOST)
    server.server_address = server.socket.getsockname()
    try:
        with serving(server):
            assert round_trip(server.server_address) == b"ping\n"
            assert server.state is sockserve.State.SERVING
            assert server.stats().state == "serving"
        assert server.state is sockserve.State.IDLE
    finally:
        server.server_close()
    assert server.state is sockserve.State.CLOSED


def test_a_drain_that_ended_in_close_is_over_when_serving_again() -> None:
    server = sockserve.ThreadingTCPServer(LOCALHOST, echo_handler(sockserve))
    server.drain(timeout=1.0)
    server.server_close()
    assert server.draining.is_set()
    server.socket = socket.create_server(LOCALHOST)
    server.server_address = server.socket.getsockname()
    try:
        with serving(server):
            assert round_trip(server.server_address) == b"ping\n"
            assert not server.draining.is_set()
    finally:
        server.server_close()


class _AsyncEcho(sockserve.AsyncStreamRequestHandler):
    async def handle(self) -> None:
        self.writer.write(await self.reader.readline())
        await self.writer.drain()


@pytest.mark.parametrize(
    ("make", "stopped"),
    [
        (lambda: sockserve.ThreadPoolTCPServer(LOCALHOST, echo_handler(sockserve)), "worker"),
        (lambda: sockserve.AsyncTCPServer(LOCALHOST, _AsyncEcho), "event loop"),
    ],
    ids=["pool", "async"],
)
def test_pool_and_async_servers_refuse_to_serve_after_close(make: object, stopped: str) -> None:
    """Their ``server_close`` stops their workers: serving again says so and what to do."""
    server = make()  # type: ignore[operator]
    with serving(server):
        assert round_trip(server.server_address) == b"ping\n"
    with serving(server):  # after shutdown() (not closed) they serve again
        assert round_trip(server.server_address) == b"ping\n"
    server.server_close()
    with pytest.raises(RuntimeError, match=f"stopped its {stopped}.*create a new server"):
        server.serve_forever(poll_interval=POLL)
    assert server.state is sockserve.State.CLOSED
