"""A request's exception goes to handle_error, which logs it through ``logging``.

The stdlib prints a traceback to stderr for every error, a client that merely
went away included, and lets an exception from verify_request end
serve_forever. sockserve logs a bug at ERROR with the client's address and the
traceback, a vanished client as one INFO line, and ends only the request.

(That a subclass's handle_error receives the exception, for every server
class, is in the conformance suite.)
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from typing import Any

import pytest

import sockserve
from helpers.clients import connect, exchange
from helpers.fakes import records_of
from helpers.handlers import OneLineEcho
from helpers.net import TIMEOUT, Net
from sockserve.testing import serving

LOCALHOST = ("127.0.0.1", 0)
SERVER_LOGGER = "sockserve.server"


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

    records = records_of(server_log, SERVER_LOGGER)
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

    records = records_of(server_log, SERVER_LOGGER)
    assert [r.levelno for r in records] == [logging.INFO]
    assert not records[0].exc_info
    assert f"127.0.0.1:{client.getsockname()[1]}" in records[0].getMessage()
    assert "Traceback" not in server_log.text


def test_a_real_connection_reset_is_one_info_line(
    net: Net, server_log: pytest.LogCaptureFixture
) -> None:
    server = net.server(sockserve.TCPServer(LOCALHOST, OneLineEcho))
    client = connect(server.server_address)
    port = client.getsockname()[1]
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # linger 0: the server's read of the queued connection gets a reset
    server.handle_request()

    records = records_of(server_log, SERVER_LOGGER)
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
    assert records_of(server_log, SERVER_LOGGER) == []  # nothing logged besides


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

    with Picky(LOCALHOST, OneLineEcho) as server, serving(server, close=False):
        for attempt in (b"first\n", b"second\n"):
            with connect(server.server_address) as client:
                reply = exchange(client, attempt)
            assert reply == (b"" if attempt == b"first\n" else attempt)
        assert server.wait_for(lambda st: st.active == 0, TIMEOUT)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
