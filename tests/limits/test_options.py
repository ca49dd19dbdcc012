"""The production options: class attribute or keyword-only argument, validated at start-up."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import sockserve as socketserver
from helpers.clients import short_tempdir


class Handler(socketserver.StreamRequestHandler):
    pass


STREAM_LIMITS = ["max_connections", "max_connections_per_ip", "idle_timeout", "max_line"]
POOL_OPTIONS = [
    "max_workers",
    "max_pending",
    "overflow",
    "dispatch",
    "first_byte_timeout",
    "min_rate",
    "min_rate_grace",
]
ALL_OPTIONS = STREAM_LIMITS + POOL_OPTIONS

#: A valid value that differs from every default, and what the server stores.
GOOD: dict[str, tuple[Any, Any]] = {
    "max_connections": (5, 5),
    "max_connections_per_ip": (2, 2),
    "idle_timeout": (2, 2.0),
    "max_line": (100, 100),
    "max_workers": (3, 3),
    "max_pending": (0, 0),
    "overflow": ("reject", "reject"),
    "dispatch": ("readable", "readable"),
    "first_byte_timeout": (0.5, 0.5),
    "min_rate": (10, 10.0),
    "min_rate_grace": (3, 3.0),
}

_BAD_INT = [0, -1, "x", True, 1.5]
_BAD_SECONDS = [0, -1, "x", True, math.nan, -0.5]
BAD: dict[str, list[Any]] = {
    "max_connections": _BAD_INT,
    "max_connections_per_ip": _BAD_INT,
    "idle_timeout": _BAD_SECONDS,
    "max_line": _BAD_INT,
    "max_workers": [*_BAD_INT, None],
    "max_pending": [-1, "x", True, 1.5, None],
    "overflow": ["drop", "", None, "BLOCK"],
    "dispatch": ["lazy", None],
    "first_byte_timeout": _BAD_SECONDS,
    "min_rate": [0, -1, "x", True, math.nan],
    "min_rate_grace": [*_BAD_SECONDS, None],
}

BAD_CASES = [
    pytest.param(name, value, id=f"{name}={value!r}") for name in BAD for value in BAD[name]
]

STDLIB_NAMED = [
    socketserver.TCPServer,
    socketserver.UDPServer,
    socketserver.UnixStreamServer,
    socketserver.UnixDatagramServer,
    socketserver.ThreadingTCPServer,
    socketserver.ThreadingUDPServer,
    socketserver.ThreadingUnixStreamServer,
    socketserver.ThreadingUnixDatagramServer,
    socketserver.ForkingTCPServer,
    socketserver.ForkingUDPServer,
    socketserver.ForkingUnixStreamServer,
    socketserver.ForkingUnixDatagramServer,
]


@pytest.fixture
def unix_dir() -> Iterator[str]:
    with short_tempdir() as path:
        yield path


def address_for(server_class: type[socketserver.TCPServer], directory: str) -> Any:
    if server_class.address_family == socket.AF_UNIX:
        return os.path.join(directory, "s")
    return ("127.0.0.1", 0)


def build(server_class: type[Any], directory: str = "/nonexistent", **options: Any) -> Any:
    """Construct without binding (nothing to clean up but the socket)."""
    return server_class(address_for(server_class, directory), Handler, False, **options)


# -- good values, both ways ----------------------------------------------------


@pytest.mark.parametrize("name", ALL_OPTIONS)
def test_every_option_is_a_keyword_only_argument(name: str) -> None:
    given, stored = GOOD[name]
    server = build(socketserver.ThreadPoolTCPServer, **{name: given})
    try:
        assert getattr(server, name) == stored
        assert type(getattr(server, name)) is type(stored)
        # The class keeps its default: the argument set the instance only.
        assert getattr(socketserver.ThreadPoolTCPServer, name) != stored
    finally:
        server.server_close()


@pytest.mark.parametrize("name", ALL_OPTIONS)
def test_every_option_is_a_class_attribute(name: str) -> None:
    given, stored = GOOD[name]
    subclass = type("Configured", (socketserver.ThreadPoolTCPServer,), {name: given})
    server = build(subclass)
    try:
        assert getattr(server, name) == stored
    finally:
        server.server_close()


def test_a_keyword_argument_overrides_the_class_attribute() -> None:
    class Configured(socketserver.ThreadPoolTCPServer):
        max_connections = 10
        max_workers = 7

    server = build(Configured, max_connections=3)
    try:
        assert server.max_connections == 3
        assert server.max_workers == 7
    finally:
        server.server_close()


def test_options_reach_the_machinery() -> None:
    server = build(
        socketserver.ThreadPoolTCPServer,
        max_connections=9,
        max_connections_per_ip=4,
        max_workers=5,
        max_pending=6,
    )
    try:
        assert server._pipeline.tracker.max_connections == 9
        assert server._pipeline.tracker.max_connections_per_ip == 4
        assert server._workers.pool.max_workers == 5
        assert server._workers.pool.max_pending == 6
    finally:
        server.server_close()


@pytest.mark.parametrize("name", STREAM_LIMITS)
def test_none_turns_a_stream_limit_off(name: str) -> None:
    server = build(socketserver.ThreadPoolTCPServer, **{name: None})
    try:
        assert getattr(server, name) is None
    finally:
        server.server_close()


# -- bad values ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), BAD_CASES)
def test_a_bad_keyword_value_is_a_value_error_naming_the_option(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        build(socketserver.ThreadPoolTCPServer, **{name: value})


@pytest.mark.parametrize(("name", "value"), BAD_CASES)
def test_a_bad_class_attribute_is_a_value_error_naming_the_option(name: str, value: Any) -> None:
    subclass = type("Misconfigured", (socketserver.ThreadPoolTCPServer,), {name: value})
    with pytest.raises(ValueError, match=name):
        build(subclass)


@pytest.mark.parametrize("value", [math.inf, 1e10, 400 * 24 * 3600.0])
@pytest.mark.parametrize("name", ["idle_timeout", "first_byte_timeout"])
def test_an_endless_timeout_is_refused_at_start_up(name: str, value: float) -> None:
    """Regression: inf (or more than sockets and poll() take) used to pass validation, then
    kill the serving loop (settimeout) or the first-byte thread (select) at the first client."""
    with pytest.raises(ValueError, match=name):
        build(socketserver.ThreadPoolTCPServer, **{name: value})


@pytest.mark.parametrize("name", ["idle_timeout", "first_byte_timeout"])
def test_long_finite_timeouts_are_accepted(name: str) -> None:
    server = build(socketserver.ThreadPoolTCPServer, **{name: 30 * 24 * 3600})
    try:
        assert getattr(server, name) == 30 * 24 * 3600.0
    finally:
        server.server_close()


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_conections"):
        build(socketserver.ThreadPoolTCPServer, max_conections=5)
    with pytest.raises(TypeError, match="max_conections"):
        build(socketserver.TCPServer, max_conections=5)


@pytest.mark.parametrize("name", POOL_OPTIONS)
@pytest.mark.parametrize(
    "server_class",
    [socketserver.TCPServer, socketserver.ThreadingTCPServer, socketserver.ForkingTCPServer],
)
def test_a_pool_option_on_a_server_without_a_pool_is_a_type_error(
    server_class: type[Any], name: str
) -> None:
    with pytest.raises(TypeError, match=name):
        build(server_class, **{name: GOOD[name][0]})


STREAM_ONLY_VALUES = [
    ("max_connections", 5),
    ("max_connections_per_ip", 2),
    ("idle_timeout", 1.0),
    ("max_line", 100),
]
DATAGRAM_SERVERS = [
    socketserver.UDPServer,
    socketserver.ThreadingUDPServer,
    socketserver.ForkingUnixDatagramServer,
    socketserver.ThreadPoolUDPServer,
    socketserver.ThreadPoolUnixDatagramServer,
]


@pytest.mark.parametrize(("name", "value"), STREAM_ONLY_VALUES)
@pytest.mark.parametrize("server_class", DATAGRAM_SERVERS, ids=lambda c: c.__name__)
def test_a_stream_only_option_on_a_datagram_server_is_a_value_error(
    server_class: type[Any], name: str, value: Any, unix_dir: str
) -> None:
    with pytest.raises(ValueError, match=name):
        build(server_class, unix_dir, **{name: value})
    subclass = type("Misconfigured", (server_class,), {name: value})
    with pytest.raises(ValueError, match=name):
        build(subclass, unix_dir)


@pytest.mark.parametrize(
    "server_class",
    [socketserver.ThreadPoolUDPServer, socketserver.ThreadPoolUnixDatagramServer],
    ids=lambda c: c.__name__,
)
def test_readable_dispatch_on_a_datagram_pool_is_a_value_error(
    server_class: type[Any], unix_dir: str
) -> None:
    with pytest.raises(ValueError, match="dispatch"):
        build(server_class, unix_dir, dispatch="readable")


def test_datagram_pool_servers_take_the_pool_options(unix_dir: str) -> None:
    for server_class in (
        socketserver.ThreadPoolUDPServer,
        socketserver.ThreadPoolUnixDatagramServer,
    ):
        server = build(
            server_class,
            unix_dir,
            max_workers=2,
            max_pending=0,
            overflow="reject",
            dispatch="immediate",
        )
        try:
            assert (server.max_workers, server.max_pending, server.overflow) == (2, 0, "reject")
        finally:
            server.server_close()


# -- defaults -------------------------------------------------------------------------


@pytest.mark.parametrize("server_class", STDLIB_NAMED, ids=lambda c: c.__name__)
def test_stdlib_named_servers_have_every_limit_off(server_class: type[Any], unix_dir: str) -> None:
    server = build(server_class, unix_dir)
    try:
        for name in STREAM_LIMITS:
            assert getattr(server, name) is None, name
        for name in POOL_OPTIONS:
            assert not hasattr(server, name), name
        assert server._pipeline.tracker.max_connections is None
        assert server._pipeline.tracker.max_connections_per_ip is None
    finally:
        server.server_close()


@pytest.mark.parametrize(
    "server_class",
    [socketserver.ThreadPoolTCPServer, socketserver.ThreadPoolUnixStreamServer],
    ids=lambda c: c.__name__,
)
def test_stream_pool_servers_have_safe_defaults(server_class: type[Any], unix_dir: str) -> None:
    server = build(server_class, unix_dir)
    try:
        assert server.max_connections == 4096
        assert server.max_connections_per_ip is None
        assert server.idle_timeout == 300
        assert server.max_line == 65536
        assert server.max_workers == 32
        assert server.max_pending == 32
        assert server.overflow == "block"
        assert server.dispatch == "auto"
        assert server.first_byte_timeout == 30
        assert server.min_rate == 256
        assert server.min_rate_grace == 1
    finally:
        server.server_close()


@pytest.mark.parametrize(
    "server_class",
    [socketserver.ThreadPoolUDPServer, socketserver.ThreadPoolUnixDatagramServer],
    ids=lambda c: c.__name__,
)
def test_datagram_pool_servers_have_no_stream_limits(
    server_class: type[Any], unix_dir: str
) -> None:
    server = build(server_class, unix_dir)
    try:
        for name in STREAM_LIMITS:
            assert getattr(server, name) is None, name
        assert server.max_workers == 32
        # Datagrams have no connection to wait for: "auto" adds no holding stage.
        assert server.dispatch == "auto"
        assert server._pipeline.steps == ()
    finally:
        server.server_close()
