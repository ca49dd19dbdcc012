"""One request at a time: ``handle_request``, its timeout, ``verify_request``, the hook
order, and what happens when a handler raises."""

from __future__ import annotations

import os
import sys
from typing import Any

from conformance_table import Harness

# What handling one request calls, in order, wherever it is handled.
HANDLING = ["finish_request", "setup", "handle", "finish", "shutdown_request", "close_request"]
SERVER_HOOKS = (
    "get_request",
    "verify_request",
    "process_request",
    "finish_request",
    "shutdown_request",
    "close_request",
)


def test_handle_request_serves_exactly_one_request(harness: Harness) -> None:
    server = harness.server(**harness.recording_hooks("get_request"))
    first, second = harness.client(server), harness.client(server)
    first.send(b"first\n")
    second.send(b"second\n")

    server.handle_request()
    assert first.recv_line() == b"first\n"  # handled, wherever it ran
    server.server_close()  # waits for the thread or child that handled it

    assert harness.recorder.hooks() == ["get_request"]
    assert first.leftover() == b""
    assert second.leftover() == b""  # never accepted, never answered


def test_handle_request_timeout_calls_handle_timeout(harness: Harness) -> None:
    server = harness.server(**harness.recording_hooks("get_request", "handle_timeout"))
    server.timeout = 0.01
    server.handle_request()
    assert harness.recorder.hooks() == ["handle_timeout"]


def test_verify_request_false_shuts_the_request_down_unhandled(harness: Harness) -> None:
    record = harness.recorder

    def verify_request(self: Any, request: Any, client_address: Any) -> bool:
        record("verify_request")
        return False

    hooks = harness.recording_hooks(
        "get_request", "process_request", "finish_request", "shutdown_request", "close_request"
    )
    server = harness.server(harness.recording_handler(), verify_request=verify_request, **hooks)
    client = harness.client(server)
    client.send(b"let me in\n")

    server.handle_request()
    server.server_close()

    # Also with a pre-handler stage (dispatch="readable"): the client's bytes
    # are there when it is accepted, so the stage ends on the accepting
    # thread and the stdlib's order holds (tests/pool/test_readable.py has
    # the order for bytes that come later).
    assert record.hooks() == [
        "get_request",
        "verify_request",
        "shutdown_request",
        "close_request",
    ]
    assert client.leftover() == b""


def test_hook_order_for_one_request(harness: Harness) -> None:
    server = harness.server(harness.recording_handler(), **harness.recording_hooks(*SERVER_HOOKS))
    client = harness.client(server)
    client.send(b"hooks\n")

    server.handle_request()
    assert client.recv_line() == b"hooks\n"
    server.server_close()

    record = harness.recorder
    me = os.getpid()
    if harness.kind.forking:
        # The parent accepts, forks and closes its copy; the child does the rest.
        assert record.hooks(pid=me) == [
            "get_request",
            "verify_request",
            "process_request",
            "close_request",
        ]
        assert record.hooks(exclude_pid=me) == HANDLING
        assert len({event["pid"] for event in record.events()} - {me}) == 1
    else:  # with dispatch="readable" too: the request's bytes were there at accept
        assert record.hooks() == ["get_request", "verify_request", "process_request", *HANDLING]


def _describe_request(request: Any) -> dict[str, str]:
    if isinstance(request, tuple):
        data, sock = request
        return {"type": "packet", "data": data.decode(), "socket": repr(sock.getsockname())}
    return {"type": "connection", "peer": repr(request.getpeername())}


def test_handler_exception_goes_to_handle_error_and_serving_goes_on(harness: Harness) -> None:
    record = harness.recorder

    def handle_error(self: Any, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        record(
            "handle_error",
            client_address=repr(client_address),
            exception=repr(exc),
            request=_describe_request(request),
        )

    def fail_on_boom(line: bytes) -> bytes:
        if line == b"boom\n":
            raise RuntimeError("boom")
        return line

    server = harness.server(harness.line_handler(fail_on_boom), handle_error=handle_error)
    harness.net.serve(server)
    failing = harness.client(server)
    failing.send(b"boom\n")
    # The failed request ends: a stream is closed, a datagram handler's finish()
    # still sends what it wrote (nothing), as in the stdlib.
    assert failing.recv_line() == b""

    assert harness.round_trip(server, b"still serving\n") == b"still serving\n"

    harness.net.stop(server)
    server.server_close()
    errors = [event for event in record.events() if event["hook"] == "handle_error"]
    assert len(errors) == 1
    assert errors[0]["client_address"] == repr(failing.sockname())
    assert errors[0]["exception"] == repr(RuntimeError("boom"))
    if harness.kind.stream:
        expected = {"type": "connection", "peer": repr(failing.sockname())}
    else:
        expected = {
            "type": "packet",
            "data": "boom\n",
            "socket": repr(server.server_address),
        }
    assert errors[0]["request"] == expected
