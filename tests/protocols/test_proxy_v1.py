"""PROXY protocol v1 (the text line): what is accepted, what is refused, and how early.

Section 2.1 of the specification: exactly one space between fields, no
leading zeros, ports in 0-65535, canonical addresses of the announced family,
a CRLF within 107 bytes, and "any sequence which does not exactly match the
protocol must be discarded", as soon as possible.
"""

from __future__ import annotations

import pytest

from sockserve.errors import ProxyHeaderError
from sockserve.protocols.proxy import (
    V1_MAX_LENGTH,
    AddressFamily,
    Command,
    NeedData,
    TransportProtocol,
    parse_proxy_header,
)

from ._cases import need, parse_all

V4, V6 = AddressFamily.INET, AddressFamily.INET6
VALID_LINES = [
    (b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0", V4, ("0.0.0.0", 0), ("0.0.0.0", 0)),
    (
        b"PROXY TCP4 10.1.100.200 9.99.199.249 1 65535",
        V4,
        ("10.1.100.200", 1),
        ("9.99.199.249", 65535),
    ),
    (b"PROXY TCP6 :: ::1 0 80", V6, ("::", 0, 0, 0), ("::1", 80, 0, 0)),
    (
        b"PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 2",
        V6,
        ("2001:db8::1", 1, 0, 0),
        ("::ffff:1.2.3.4", 2, 0, 0),
    ),
    (
        b"PROXY TCP6 2001:0db8:0000:0000:0000:0000:0000:0001 1::2 3 4",
        V6,
        ("2001:db8::1", 3, 0, 0),
        ("1::2", 4, 0, 0),
    ),
    (
        b"PROXY TCP6 1:0:0:2:0:0:0:3 0:0:1:0:0:1:0:0 5 6",
        V6,
        ("1:0:0:2::3", 5, 0, 0),
        ("::1:0:0:1:0:0", 6, 0, 0),
    ),
]


@pytest.mark.parametrize(("line", "family", "source", "destination"), VALID_LINES)
def test_valid_tcp_lines(
    line: bytes, family: AddressFamily, source: object, destination: object
) -> None:
    header = parse_all(line + b"\r\n")
    assert header.version == 1
    assert header.command is Command.PROXY
    assert header.transport is TransportProtocol.STREAM
    assert header.family is family
    assert (header.source, header.destination) == (source, destination)
    assert header.length == len(line) + 2
    assert header.proxied
    assert header.tlvs == ()
    assert header.ssl is None


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY UNKNOWN",
        b"PROXY UNKNOWN ",
        b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2",
        b"PROXY UNKNOWN anything the sender likes, even\x00NUL or \xff bytes",
    ],
)
def test_unknown_keeps_the_real_addresses(line: bytes) -> None:
    header = parse_all(line + b"\r\nDATA")
    assert header.family is AddressFamily.UNSPEC
    assert header.transport is TransportProtocol.UNSPEC
    assert header.source is header.destination is None
    assert not header.proxied
    assert header.client_address(("192.0.2.1", 4000)) == ("192.0.2.1", 4000)
    assert header.length == len(line) + 2


def test_length_limit_is_107_bytes_with_the_crlf() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(line) == V1_MAX_LENGTH
    assert parse_all(line).length == V1_MAX_LENGTH
    longer = line[:-2] + b"x\r\n"
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parse_proxy_header(longer)
    # Without waiting for the CRLF: 106 bytes that are neither a CRLF away
    # from the end nor end with a CR cannot end within 107.
    assert need(longer[:105]) == NeedData(107, 107)
    assert need(line[:106]) == NeedData(107, 107)  # ends with the CR
    for size in (106, 107):
        with pytest.raises(ProxyHeaderError, match="longer than 107"):
            parse_proxy_header(longer[:size])


def test_a_tcp6_line_with_long_addresses_can_exceed_107_bytes() -> None:
    address = b"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    line = b"PROXY TCP6 " + address + b" " + address + b" 65535 65535\r\n"
    assert len(line) > V1_MAX_LENGTH
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parse_proxy_header(line)


# (line, fragment of the error): complete lines, CRLF included.
MALFORMED = [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR or LF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CR or LF"),
    (b"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n", "CR or LF"),
    (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown PROXY v1 protocol"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "malformed"),
    (b"PROXY TCP4\r\n", "unknown PROXY v1 protocol"),
    (b"PROXY TCP4 \r\n", "malformed"),
    (b"PROXY \r\n", "unknown PROXY v1 protocol"),
    (b"PROXY\r\n", "expected a PROXY v1 line"),
    (b"PROXY TCP4 192.168.000.1 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 ::1 ::1 1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port out of range"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "port out of range"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n", "malformed"),
    (b"PROXY TCP4 \xef\xbc\x91.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "invalid IPv6"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "malformed"),
    (b"PROXY TCP6 1::2::3 ::1 1 2\r\n", "invalid IPv6"),
    (b"PROXY TCP6 12345::1 ::1 1 2\r\n", "invalid IPv6"),
    (b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "invalid IPv6"),
    (b"PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n", "invalid IPv6"),
    (b"PROXY TCP6 [::1] ::1 1 2\r\n", "malformed"),
    (b"PROXY TCP6 ::1 ::1 1 65536\r\n", "port out of range"),
    (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown PROXY v1 protocol"),
    (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown PROXY v1 protocol"),
    (b"PROXY UNKNOWNX\r\n", "unknown PROXY v1 protocol"),
    (b"PROXY UNKNOWN\rX\r\n", "CR or LF"),
    (b"PROXY UNKNOWN foo\nbar\r\n", "CR or LF"),
    (b"PROXY UNKNOWN foo\rbar\r\n", "CR or LF"),
    (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "expected a PROXY v1 line"),
    (b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "expected a PROXY v1 line"),
    (b" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "expected a PROXY header"),
]


@pytest.mark.parametrize(("line", "error"), MALFORMED, ids=repr)
def test_malformed(line: bytes, error: str) -> None:
    with pytest.raises(ProxyHeaderError, match=error):
        parse_proxy_header(line + b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize(("line", "error"), MALFORMED, ids=repr)
def test_malformed_is_never_a_valid_prefix(line: bytes, error: str) -> None:
    # However the bytes arrive, the parser either waits or refuses, and once it
    # refused a prefix it refuses every longer one.
    refused = False
    for size in range(len(line) + 1):
        try:
            result = parse_proxy_header(line[:size])
        except ProxyHeaderError:
            refused = True
            continue
        assert not refused, f"refused {line[: size - 1]!r} but accepted {line[:size]!r}"
        assert size < result.at_least  # type: ignore[union-attr]
    assert refused


# Prefixes with no CRLF yet that no valid line can start with: refused at once.
EARLY = [
    b"G",
    b"PROXX",
    b"PROXY X",
    b"PROXY TCP5",
    b"PROXY UNKNOWNX",
    b"PROXY TCP4 1.2.3.4x",
    b"PROXY TCP4 1.2.3.4  ",
    b"PROXY TCP4  ",
    b"PROXY TCP4 1234567890123456",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 123456",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ",
    b"PROXY TCP4 1.2.3.4\r",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
    b"PROXY TCP4 1.2.3.4\n",
    b"PROXY TCP6 ::1%",
    b"PROXY TCP6 g",
    b"PROXY UNKNOWN \n",
]


@pytest.mark.parametrize("prefix", EARLY, ids=repr)
def test_refused_before_the_crlf(prefix: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(prefix)


@pytest.mark.parametrize(
    ("prefix", "at_least"),
    [
        (b"", 15),
        (b"P", 15),
        (b"PROXY ", 15),
        (b"PROXY T", 22),
        (b"PROXY TCP4", 32),
        (b"PROXY TCP4 ", 32),
        (b"PROXY TCP6 ", 22),
        (b"PROXY TCP4 192.168.0.1", 36),  # + " 0.0.0.0 0 0\r\n"
        (b"PROXY TCP4 192.168.0.1 ", 36),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443", 47),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r", 47),
        (b"PROXY UNKNOWN", 15),
        (b"PROXY UNKNOWN ", 16),
        (b"PROXY UNKNOWN x", 17),
    ],
)
def test_lower_bounds(prefix: bytes, at_least: int) -> None:
    wanted = need(prefix, "v1")
    assert wanted.at_least == at_least
    assert wanted.at_most == (at_least if prefix.endswith(b"\r") else V1_MAX_LENGTH)
