"""The PROXY module's surface: caller mistakes, the encoders, the result helpers, CRC32C.

Caller mistakes raise TypeError/ValueError, never ProxyHeaderError, so a bug
in the server is not logged as a misbehaving peer. The encoders are checked
against bytes recorded from HAProxy, so they do not merely agree with the
parser.
"""

from __future__ import annotations

import array
import ast
import dataclasses
import socket
import zlib
from pathlib import Path

import pytest

import sockserve.protocols
from sockserve.errors import PeerError, ProxyHeaderError
from sockserve.protocols.crc32c import crc32c
from sockserve.protocols.proxy import (
    AddressFamily,
    Command,
    NeedData,
    ProxyHeader,
    SslClient,
    SslInfo,
    Tlv,
    TransportProtocol,
    encode_v1,
    encode_v2,
    parse_proxy_header,
)

from ._cases import DATA, VALID, parse_all

V1_EXAMPLE = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
UNSPEC = TransportProtocol.UNSPEC


# --- caller mistakes ---------------------------------------------------------------------


@pytest.mark.parametrize("data", ["PROXY UNKNOWN\r\n", None, 42, [80, 82], array.array("B")])
def test_data_must_be_bytes_like(data: object) -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        parse_proxy_header(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["V1", "1", "", "optional", None, 2])
def test_mode_must_be_known(mode: object) -> None:
    with pytest.raises(ValueError, match="mode"):
        parse_proxy_header(V1_EXAMPLE, mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [-1, 65536, True, 1.0, "4096", None])
def test_max_v2_length_must_be_an_int_in_range(limit: object) -> None:
    with pytest.raises(ValueError, match="max_v2_length"):
        parse_proxy_header(V1_EXAMPLE, max_v2_length=limit)  # type: ignore[arg-type]


def test_peer_errors_are_not_caller_errors() -> None:
    assert issubclass(ProxyHeaderError, PeerError)
    assert not issubclass(ProxyHeaderError, (ValueError, TypeError))


def test_a_memoryview_of_any_format_is_read_as_bytes() -> None:
    words = array.array("H")
    words.frombytes(V1_EXAMPLE + b"x")  # an even number of bytes
    assert parse_proxy_header(memoryview(words)) == parse_all(V1_EXAMPLE)


def test_a_large_buffer_is_not_a_problem() -> None:
    # Only the bytes a header can take are looked at (and copied).
    data = bytearray(V1_EXAMPLE + bytes(10_000_000))
    assert parse_proxy_header(data) == parse_all(V1_EXAMPLE)


# --- the result ---------------------------------------------------------------------------


def test_results_are_frozen_and_hashable() -> None:
    header = parse_all(V1_EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.length = 1  # type: ignore[misc]
    assert {header: 1}[parse_all(V1_EXAMPLE)] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        NeedData(1, 2).at_least = 3  # type: ignore[misc]


def test_client_address() -> None:
    real = ("10.0.0.9", 51000)
    assert parse_all(V1_EXAMPLE).client_address(real) == ("192.168.0.1", 56324)
    assert parse_all(b"PROXY UNKNOWN\r\n").client_address(real) == real
    assert parse_all(encode_v2(command=Command.LOCAL)).client_address(real) == real


def test_v1_and_v2_of_one_connection_are_equal_but_for_version_and_length() -> None:
    one = parse_all(encode_v1(("2001:db8::1", 1), ("2001:db8::2", 2)))
    two = parse_all(encode_v2(("2001:db8::1", 1), ("2001:db8::2", 2)))
    assert dataclasses.replace(one, version=2, length=two.length) == two


# --- the encoders -------------------------------------------------------------------------


def test_encode_v1() -> None:
    assert encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == V1_EXAMPLE
    assert encode_v1() == b"PROXY UNKNOWN\r\n"
    assert encode_v1(("::FFFF:1.2.3.4", 1, 0, 0), ("2001:DB8:0::1", 2)) == (
        b"PROXY TCP6 ::ffff:102:304 2001:db8::1 1 2\r\n"
    )


@pytest.mark.parametrize(
    "name",
    [
        "haproxy-send-proxy-v2-tcp4.bin",
        "haproxy-send-proxy-v2-tcp6.bin",
        "haproxy-send-proxy-v2-unix.bin",
        "haproxy-check-send-proxy-v2.bin",
        "haproxy-send-proxy-v2-tls-tlvs.bin",
        "haproxy-send-proxy-tcp4.bin",
        "haproxy-send-proxy-tcp6.bin",
        "haproxy-send-proxy-unix.bin",
    ],
)
def test_encoders_reproduce_haproxy_byte_for_byte(name: str) -> None:
    data = (DATA / name).read_bytes()
    header = parse_all(data)
    wire = data[: header.length]
    if header.version == 1:
        assert encode_v1(header.source, header.destination) == wire
        return
    named = {"alpn": header.alpn, "authority": header.authority, "unique_id": header.unique_id}
    encoded = encode_v2(
        header.source,
        header.destination,
        command=header.command,
        transport=header.transport,
        **named,
        ssl=header.ssl,
        crc32c=header.crc32c is not None,
    )
    assert encoded == wire


def test_encode_v2_families() -> None:
    assert parse_all(encode_v2(("1.2.3.4", 1), ("5.6.7.8", 2))).family is AddressFamily.INET
    udp = parse_all(encode_v2(("::1", 1), ("::2", 2), transport=TransportProtocol.DGRAM))
    assert (udp.family, udp.transport) == (AddressFamily.INET6, TransportProtocol.DGRAM)
    unix = parse_all(encode_v2("/a", b"\0b"))
    assert (unix.family, unix.source, unix.destination) == (AddressFamily.UNIX, "/a", b"\0b")
    local = parse_all(encode_v2(command=Command.LOCAL, tlvs=[(0xE0, b"x")]))
    assert (local.command, local.family, local.tlvs) == (
        Command.LOCAL,
        AddressFamily.UNSPEC,
        (Tlv(0xE0, b"x"),),
    )


def test_encode_v2_every_tlv() -> None:
    ssl = SslInfo.build(
        client=SslClient.SSL | SslClient.CERT_CONN,
        verify=0,
        version="TLSv1.3",
        cn="client",
        cipher="TLS_AES_128_GCM_SHA256",
        sig_alg="RSA-SHA256",
        key_alg="EC256",
        group="X25519",
        sig_scheme="ecdsa_secp256r1_sha256",
        client_cert=b"DER",
        tlvs=[(0xF1, b"x")],
    )
    header = parse_all(
        encode_v2(
            ("1.2.3.4", 1),
            ("5.6.7.8", 2),
            alpn=b"h2",
            authority="bücher.example",
            unique_id=b"\x00" * 128,
            ssl=ssl,
            netns="blue",
            tlvs=[(0xEA, b"\x01vpce-1")],
            crc32c=True,
        )
    )
    assert header.ssl == ssl
    assert (header.alpn, header.authority, header.netns) == (b"h2", "bücher.example", "blue")
    assert header.unique_id == b"\x00" * 128
    assert header.tlv(0xEA) == b"\x01vpce-1"
    assert header.crc32c is not None
    assert ssl.group == "X25519"
    assert ssl.sig_scheme == "ecdsa_secp256r1_sha256"
    assert ssl.key_alg == "EC256"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: encode_v1(("1.2.3.4", 1), None), ValueError),
        (lambda: encode_v1(("1.2.3.4", 1), ("::1", 2)), ValueError),
        (lambda: encode_v1(("1.2.3.4", 65536), ("1.2.3.4", 2)), ValueError),
        (lambda: encode_v1(("1.2.3.4", -1), ("1.2.3.4", 2)), ValueError),
        (lambda: encode_v1(("example.com", 1), ("1.2.3.4", 2)), ValueError),
        (lambda: encode_v1(("1.2.3.4", 1, 0, 0), ("1.2.3.4", 2)), ValueError),
        (lambda: encode_v1(("1.2.3.4", "1"), ("1.2.3.4", 2)), TypeError),  # type: ignore[arg-type]
        (lambda: encode_v1("/path", "/path"), TypeError),
        (lambda: encode_v2(("1.2.3.4", 1)), ValueError),
        (lambda: encode_v2("/a", ("1.2.3.4", 1)), TypeError),
        (lambda: encode_v2("/" + "a" * 108, "/b"), ValueError),
        (lambda: encode_v2(("1.2.3.4", 1), ("1.2.3.4", 2), transport=UNSPEC), ValueError),
        (lambda: encode_v2(unique_id=b"u" * 129), ValueError),
        (lambda: encode_v2(tlvs=[(256, b"")]), ValueError),
        (lambda: encode_v2(tlvs=[(-1, b"")]), ValueError),
        (lambda: encode_v2(tlvs=[(0xE0, bytes(65536))]), ValueError),
        (lambda: encode_v2(tlvs=[(0xE0, bytes(40000))] * 2), ValueError),
        (lambda: encode_v2(netns="ü"), ValueError),
        (lambda: encode_v2(command=2), ValueError),  # type: ignore[arg-type]
        (lambda: SslInfo.build(verify=-1), ValueError),
        (lambda: SslInfo.build(client=256), ValueError),
    ],
)  # fmt: skip
def test_encoder_misuse(call: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        call()  # type: ignore[operator]


# --- CRC32C ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),  # the catalogue's check value
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_crc32c_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected
    assert crc32c(bytearray(data)) == expected
    assert crc32c(memoryview(data)) == expected


def test_crc32c_continues_and_is_not_zlibs() -> None:
    assert crc32c(b"56789", crc32c(b"1234")) == crc32c(b"123456789")
    assert crc32c(b"123456789") != zlib.crc32(b"123456789")
    with pytest.raises(ValueError, match="32-bit"):
        crc32c(b"", -1)


# --- addresses as the socket module gives them --------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["::", "::1", "1::", "2001:db8::1", "1:0:0:2:0:0:0:3", "0:0:1:0:0:1:0:0", "1:2:3:4:5:6:7:8",
     "::ffff:192.0.2.1", "fe80::1:0:0:0", "1:0:1:0:1:0:1:0", "::ffff:0:0", "64:ff9b::c000:201"],
)  # fmt: skip
def test_ipv6_text_matches_inet_ntop(text: str) -> None:
    packed = socket.inet_pton(socket.AF_INET6, text)
    canonical = socket.inet_ntop(socket.AF_INET6, packed)
    source = parse_all(encode_v2((text, 1), ("::", 2))).source
    assert source == (canonical, 1, 0, 0)
    assert parse_all(encode_v1((text, 1), ("::", 2))).source == (canonical, 1, 0, 0)


# --- sans-I/O -----------------------------------------------------------------------------------

IO_MODULES = {"socket", "select", "selectors", "asyncio", "ssl", "threading", "subprocess"}


@pytest.mark.parametrize(
    "path", sorted(Path(sockserve.protocols.__file__).parent.glob("*.py")), ids=lambda p: p.name
)
def test_protocol_modules_import_no_io(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & IO_MODULES


def test_every_fixture_round_trips_through_the_encoders() -> None:
    for case in VALID:
        header = parse_all(case.data)
        if header.version == 1:
            again = encode_v1(header.source, header.destination)
        else:
            again = encode_v2(
                header.source,
                header.destination,
                command=header.command,
                transport=header.transport,
                tlvs=header.tlvs,
            )
        reparsed = parse_all(again)
        if header.command is Command.PROXY:
            # Addresses and TLVs survive; LOCAL headers drop their addresses.
            assert reparsed.source == header.source
            assert reparsed.tlvs == header.tlvs
            assert reparsed.ssl == header.ssl
        assert isinstance(reparsed, ProxyHeader)
