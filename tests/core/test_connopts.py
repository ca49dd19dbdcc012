"""ConnectionOptions: idle timeout and TCP_NODELAY, set once on the listener where inherited."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from helpers.clients import connect, short_tempdir
from helpers.net import Net
from sockserve.core.connopts import ConnectionOptions
from sockserve.core.timeouts import IdleTimeoutSocket, kernel_timeval

TIMEVAL = len(kernel_timeval(0.0))


def rcvtimeo(sock: socket.socket) -> bytes:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL)


@contextmanager
def tcp_listener(family: int) -> Iterator[socket.socket]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((host, 0))
    except OSError as exc:  # pragma: no cover - a machine without ::1
        pytest.skip(f"{host} unavailable: {exc}")
    listener.listen()
    with listener:
        yield listener


def accept_one(listener: socket.socket, net: Net) -> socket.socket:
    """Connect a client and return the accepted side (both closed at teardown)."""
    net.closing(connect(listener.getsockname()))
    request, _ = listener.accept()
    return net.closing(request)  # type: ignore[no-any-return]


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_tcp_connections_inherit_the_options_from_the_listener(family: int, net: Net) -> None:
    options = ConnectionOptions()
    with tcp_listener(family) as listener:
        first = accept_one(listener, net)
        options.apply(listener, first, 30.0, True)
        # The listener now carries the timeout; the kernel copied it to later connections.
        assert rcvtimeo(listener) != kernel_timeval(0.0)
        second = accept_one(listener, net)
        assert rcvtimeo(second) == rcvtimeo(listener)
        options.apply(listener, second, 30.0, True)
        for request in (first, second):
            assert type(request) is IdleTimeoutSocket
            assert rcvtimeo(request) == rcvtimeo(listener)
            assert request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert options._inherited is True


def test_a_changed_idle_timeout_reconfigures_the_listener(net: Net) -> None:
    options = ConnectionOptions()
    with tcp_listener(socket.AF_INET) as listener:
        options.apply(listener, accept_one(listener, net), 30.0, False)
        before = rcvtimeo(listener)
        request = accept_one(listener, net)
        options.apply(listener, request, 90.0, False)
        assert rcvtimeo(listener) != before
        assert rcvtimeo(request) == rcvtimeo(listener)
        assert not request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_nodelay_alone_leaves_the_socket_class_and_timeout_alone(net: Net) -> None:
    options = ConnectionOptions()
    with tcp_listener(socket.AF_INET) as listener:
        request = accept_one(listener, net)
        options.apply(listener, request, None, True)
        assert type(request) is socket.socket
        assert rcvtimeo(request) == kernel_timeval(0.0)
        assert request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_unix_connections_get_the_timeout_one_by_one() -> None:
    options = ConnectionOptions()
    with short_tempdir() as tmp:
        path = os.path.join(tmp, "s")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
                request, _ = listener.accept()
                with request:
                    options.apply(listener, request, 30.0, False)
                    assert options._inherited is False
                    assert type(request) is IdleTimeoutSocket
                    assert rcvtimeo(request) != kernel_timeval(0.0)


def test_a_listener_it_cannot_configure_means_per_connection_options(net: Net) -> None:
    """A server whose ``socket`` is not a socket (a subclass's own listener object)."""
    options = ConnectionOptions()
    with tcp_listener(socket.AF_INET) as listener:
        request = accept_one(listener, net)
        options.apply(object(), request, 30.0, True)
        assert options._inherited is False
        assert rcvtimeo(listener) == kernel_timeval(0.0)  # left untouched
        assert rcvtimeo(request) != kernel_timeval(0.0)
        assert request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert type(request) is IdleTimeoutSocket
