"""The bind-spec parser: every accepted form, every rejected one, and the round trip."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from sockserve.core.addresses import BindSpec, BindSpecError, Transport, parse_bind_spec

AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC = (
    socket.AF_INET,
    socket.AF_INET6,
    socket.AF_UNIX,
    socket.AF_UNSPEC,
)
TCP, UDP, UNIX, FD = Transport.TCP, Transport.UDP, Transport.UNIX, Transport.FD

# spec -> (expected BindSpec, canonical spelling); parsed with IPv6 available.
GOOD = {
    "127.0.0.1:7000": (BindSpec(TCP, AF_INET, ("127.0.0.1", 7000)), "tcp://127.0.0.1:7000"),
    "0.0.0.0:0": (BindSpec(TCP, AF_INET, ("0.0.0.0", 0)), "tcp://0.0.0.0:0"),
    "localhost:65535": (BindSpec(TCP, AF_INET, ("localhost", 65535)), "tcp://localhost:65535"),
    "my-host_1.example.org:80": (
        BindSpec(TCP, AF_INET, ("my-host_1.example.org", 80)),
        "tcp://my-host_1.example.org:80",
    ),
    "[::1]:7000": (BindSpec(TCP, AF_INET6, ("::1", 7000)), "tcp://[::1]:7000"),
    "[::]:7000": (BindSpec(TCP, AF_INET6, ("::", 7000)), "tcp://[::]:7000"),
    "[fe80::1%eth0]:7": (BindSpec(TCP, AF_INET6, ("fe80::1%eth0", 7)), "tcp://[fe80::1%eth0]:7"),
    ":7000": (BindSpec(TCP, AF_INET6, ("::", 7000), dual_stack=True), "tcp://:7000"),
    "tcp://127.0.0.1:1": (BindSpec(TCP, AF_INET, ("127.0.0.1", 1)), "tcp://127.0.0.1:1"),
    "tcp://:0": (BindSpec(TCP, AF_INET6, ("::", 0), dual_stack=True), "tcp://:0"),
    "udp://127.0.0.1:53": (BindSpec(UDP, AF_INET, ("127.0.0.1", 53)), "udp://127.0.0.1:53"),
    "udp://[::1]:53": (BindSpec(UDP, AF_INET6, ("::1", 53)), "udp://[::1]:53"),
    "udp://:9": (BindSpec(UDP, AF_INET6, ("::", 9), dual_stack=True), "udp://:9"),
    "unix:/run/echo.sock": (BindSpec(UNIX, AF_UNIX, "/run/echo.sock"), "unix:/run/echo.sock"),
    "unix:relative.sock": (BindSpec(UNIX, AF_UNIX, "relative.sock"), "unix:relative.sock"),
    "unix:@echo": (BindSpec(UNIX, AF_UNIX, "\0echo"), "unix:@echo"),
    "fd://3": (BindSpec(FD, AF_UNSPEC, 3), "fd://3"),
    "fd://0": (BindSpec(FD, AF_UNSPEC, 0), "fd://0"),
}

# spec -> a fragment the error message must contain (besides the spec itself).
BAD = {
    "": "empty",
    "nohost": "missing ':PORT'",
    "7000": "missing ':PORT'",
    "udp://nohost": "missing ':PORT'",
    "tcp://": "missing ':PORT'",
    "127.0.0.1:": "missing port number",
    ":": "missing port number",
    "127.0.0.1:99999": "port 99999 is out of range 0-65535",
    "127.0.0.1:65536": "out of range",
    "127.0.0.1:http": "'http' is not a number",
    "127.0.0.1:-1": "is not a number",
    "127.0.0.1:+80": "is not a number",
    "127.0.0.1: 80": "is not a number",
    "127.0.0.1:\uff18\uff10": "is not a number",  # full-width digits: isdigit() but not ASCII
    "[::1:80": "without a closing ']'",
    "[::1]80": "missing ':PORT' after the bracketed",
    "[::1]": "missing ':PORT' after the bracketed",
    "[::1]:": "missing port number",
    "[]:80": "empty IPv6 address",
    "[127.0.0.1]:80": "'127.0.0.1' is not an IPv6 address",
    "[nonsense]:80": "is not an IPv6 address",
    "::1:80": "must be in brackets",
    "::1]:80": "must be in brackets",
    "host]:80": "misplaced",
    "bad host:80": "not a valid host name",
    "http://example.org:80": "unknown scheme 'http://'",
    "unix:": "empty socket path",
    "unix:@": "empty abstract socket name",
    "unix:/tmp/a\0b": "NUL",
    "fd://": "is not a non-negative integer",
    "fd://-1": "is not a non-negative integer",
    "fd://three": "is not a non-negative integer",
}


@pytest.mark.parametrize("text", GOOD)
def test_good_spec_parses(text: str) -> None:
    expected, _canonical = GOOD[text]
    assert parse_bind_spec(text, ipv6=True) == expected


@pytest.mark.parametrize("text", GOOD)
def test_str_is_canonical_and_parses_back(text: str) -> None:
    spec = parse_bind_spec(text, ipv6=True)
    _expected, canonical = GOOD[text]
    assert str(spec) == canonical
    assert parse_bind_spec(str(spec), ipv6=True) == spec


@pytest.mark.parametrize("text", BAD)
def test_bad_spec_is_rejected_with_a_reason(text: str) -> None:
    with pytest.raises(BindSpecError) as caught:
        parse_bind_spec(text)
    message = str(caught.value)
    assert message.startswith(f"invalid bind address {text!r}: ")
    assert BAD[text] in message
    assert caught.value.spec == text
    assert isinstance(caught.value, ValueError)  # callers may catch the general class


@pytest.mark.parametrize("scheme", ["", "tcp://", "udp://"])
def test_all_addresses_without_ipv6_is_the_ipv4_wildcard(scheme: str) -> None:
    spec = parse_bind_spec(f"{scheme}:7000", ipv6=False)
    assert spec.family == AF_INET
    assert spec.address == ("0.0.0.0", 7000)
    assert not spec.dual_stack
    assert spec.transport is (UDP if scheme == "udp://" else TCP)


def test_bound_to_reports_the_port_the_kernel_chose() -> None:
    spec = parse_bind_spec("localhost:0")
    bound = spec.bound_to(("127.0.0.1", 43211))
    assert str(bound) == "tcp://127.0.0.1:43211"
    assert bound.family == AF_INET


def test_bound_to_accepts_ipv6_socket_names() -> None:
    bound = parse_bind_spec("udp://[::1]:0").bound_to(("::1", 5353, 0, 0))
    assert str(bound) == "udp://[::1]:5353"


def test_bound_to_keeps_the_dual_stack_wildcard() -> None:
    bound = parse_bind_spec(":0", ipv6=True).bound_to(("::", 40000, 0, 0))
    assert bound.dual_stack
    assert str(bound) == "tcp://:40000"


def test_bound_to_leaves_unix_paths_alone() -> None:
    spec = parse_bind_spec("unix:/tmp/x.sock")
    assert spec.bound_to("/tmp/x.sock") == spec


def test_inet_address_only_exists_for_tcp_and_udp() -> None:
    assert parse_bind_spec("udp://127.0.0.1:9").inet_address == ("127.0.0.1", 9)
    with pytest.raises(TypeError, match="has no host and port"):
        parse_bind_spec("unix:/tmp/x.sock").inet_address  # noqa: B018


def test_spec_is_immutable() -> None:
    spec = parse_bind_spec("127.0.0.1:7000")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.address = ("127.0.0.1", 1)  # type: ignore[misc]
