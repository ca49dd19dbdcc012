"""PROXY protocol v2 (binary): families, commands, lengths, TLVs and the CRC32C.

Headers here are built by hand with ``struct`` (not with ``encode_v2``), so a
mistake shared by the encoder and the parser cannot hide.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from sockserve.errors import ProxyHeaderError
from sockserve.protocols.crc32c import crc32c
from sockserve.protocols.proxy import (
    DEFAULT_MAX_V2_LENGTH,
    V2_SIGNATURE,
    Command,
    ProxyHeader,
    SslClient,
    Tlv,
    TlvType,
    parse_proxy_header,
)

from ._cases import DATA, need, parse_all

INET4 = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack("!HH", 1234, 443)
INET6 = (
    bytes(15) + b"\x01" + bytes.fromhex("20010db8" + "00" * 11 + "02") + struct.pack("!HH", 1, 2)
)
UNIX = b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")


def v2(ver_cmd: int, fam: int, body: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + struct.pack("!H", size) + body


def tlv(kind: int, value: bytes, size: int | None = None) -> bytes:
    return struct.pack("!BH", kind, len(value) if size is None else size) + value


def with_crc(header: bytes, where: int) -> bytes:
    """Fill the 4 zero bytes at ``where`` with the header's CRC32C."""
    assert header[where : where + 4] == b"\0\0\0\0"
    return header[:where] + struct.pack("!I", crc32c(header)) + header[where + 4 :]


@pytest.mark.parametrize(
    ("fam", "body", "kind", "addresses"),
    [
        (0x11, INET4, ("INET", "STREAM"), (("192.0.2.1", 1234), ("198.51.100.2", 443))),
        (0x12, INET4, ("INET", "DGRAM"), (("192.0.2.1", 1234), ("198.51.100.2", 443))),
        (0x21, INET6, ("INET6", "STREAM"), (("::1", 1, 0, 0), ("2001:db8::2", 2, 0, 0))),
        (0x22, INET6, ("INET6", "DGRAM"), (("::1", 1, 0, 0), ("2001:db8::2", 2, 0, 0))),
        (0x31, UNIX, ("UNIX", "STREAM"), ("/tmp/a", "/tmp/b")),
        (0x32, UNIX, ("UNIX", "DGRAM"), ("/tmp/a", "/tmp/b")),
        (0x00, b"", ("UNSPEC", "UNSPEC"), (None, None)),
    ],
)
def test_families_with_proxy_and_local(
    fam: int, body: bytes, kind: tuple[str, str], addresses: tuple[object, object]
) -> None:
    family, transport = kind
    source, destination = addresses
    header = parse_all(v2(0x21, fam, body) + b"data")
    assert (header.version, header.command) == (2, Command.PROXY)
    assert (header.family.name, header.transport.name) == (family, transport)
    assert (header.source, header.destination) == (source, destination)
    assert header.proxied is (source is not None)
    assert header.length == 16 + len(body)
    # The same block under LOCAL: a health check; the addresses are ignored.
    local = parse_all(v2(0x20, fam, body))
    assert local.command is Command.LOCAL
    assert local.family.name == family
    assert local.source is local.destination is None
    assert not local.proxied
    assert local.client_address("/run/real.sock") == "/run/real.sock"


def test_local_may_omit_the_address_block_its_family_names() -> None:
    # Section 2.2: LOCAL "should not present any address"; whatever the family
    # byte says, a short block is read as TLVs, never as addresses.
    header = parse_all(v2(0x20, 0x11, tlv(0x04, b"pad")))
    assert header.command is Command.LOCAL
    assert header.tlvs == (Tlv(TlvType.NOOP, b"pad"),)
    assert parse_all(v2(0x20, 0x21)).length == 16


def test_proxy_unspec_reads_what_follows_as_tlvs() -> None:
    header = parse_all(v2(0x21, 0x00, tlv(0xE1, b"x")))
    assert header.tlvs == (Tlv(0xE1, b"x"),)
    assert not header.proxied


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/run/x.sock", "/run/x.sock"),
        (b"/run/x.sock\0garbage after the terminator", "/run/x.sock"),
        (b"/" + b"p" * 107, "/" + "p" * 107),  # 108 bytes, no terminator
        (b"/run/\xff.sock", "/run/\udcff.sock"),  # not UTF-8: as os.fsdecode gives it
        (b"", ""),  # an unnamed socket
        (b"\0abstract", b"\0abstract"),
        (b"\0with\0nul", b"\0with\0nul"),
    ],
)
def test_unix_paths(raw: bytes, expected: str | bytes) -> None:
    body = raw.ljust(108, b"\0") + b"/dst".ljust(108, b"\0")
    header = parse_all(v2(0x21, 0x31, body))
    assert header.source == expected
    assert header.destination == "/dst"


def test_address_block_followed_by_tlvs() -> None:
    body = INET4 + tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0xEA, b"\x01vpce-1")
    header = parse_all(v2(0x21, 0x11, body))
    assert header.source == ("192.0.2.1", 1234)
    assert header.alpn == b"h2"
    assert header.authority == "example.com"
    assert header.tlv(0xEA) == b"\x01vpce-1"
    assert header.tlv(0xEB) is None
    assert header.unique_id is header.netns is header.crc32c is header.ssl is None


def test_repeated_unregistered_tlvs_are_kept_in_order() -> None:
    body = INET4 + tlv(0xE0, b"a") + tlv(0x04, b"") + tlv(0xE0, b"b") + tlv(0x04, b"\0")
    header = parse_all(v2(0x21, 0x11, body))
    assert [tlv.type for tlv in header.tlvs] == [0xE0, 0x04, 0xE0, 0x04]
    assert header.tlv(0xE0) == b"a"
    assert header.tlv_map == {0xE0: b"a", 0x04: b""}


def test_ssl_tlv() -> None:
    ssl = (
        bytes([0x05])
        + struct.pack("!I", 0)
        + tlv(0x21, b"TLSv1.3")
        + tlv(0x22, "Zoë".encode())
        + tlv(0x28, b"\x30\x82DER")
        + tlv(0xF0, b"experimental")
    )
    header = parse_all(v2(0x21, 0x11, INET4 + tlv(0x20, ssl)))
    info = header.ssl
    assert info is not None
    assert info.client == SslClient.SSL | SslClient.CERT_SESS
    assert info.version == "TLSv1.3"
    assert info.cn == "Zoë"
    assert info.client_cert == b"\x30\x82DER"
    assert info.cipher is info.sig_alg is info.key_alg is info.group is info.sig_scheme is None
    assert info.tlvs[-1] == Tlv(0xF0, b"experimental")
    assert info.client_cert_verified
    assert info.encode() == ssl


@pytest.mark.parametrize(
    ("client", "verify", "verified"),
    [(0x01, 0, False), (0x03, 0, True), (0x05, 0, True), (0x03, 1, False), (0x00, 0, False)],
)
def test_client_cert_verified(client: int, verify: int, verified: bool) -> None:
    ssl = bytes([client]) + struct.pack("!I", verify)
    header = parse_all(v2(0x21, 0x00, tlv(0x20, ssl)))
    assert header.ssl is not None
    assert header.ssl.client_cert_verified is verified


def test_unique_id_of_128_bytes() -> None:
    header = parse_all(v2(0x21, 0x00, tlv(0x05, b"u" * 128)))
    assert header.unique_id == b"u" * 128


def test_crc32c_is_verified_over_the_whole_header() -> None:
    body = INET4 + tlv(0x01, b"h2") + tlv(0x03, b"\0\0\0\0") + tlv(0xE0, b"tail")
    header_bytes = with_crc(v2(0x21, 0x11, body), 16 + len(INET4) + 5 + 3)
    header = parse_all(header_bytes + b"not covered by the checksum")
    assert header.crc32c == crc32c(v2(0x21, 0x11, body))
    # Any single flipped bit is caught (by the checksum or by an earlier
    # check), except in the CRC32C TLV's own type byte: a header without the
    # TLV carries no checksum to verify.
    crc_type = 16 + len(INET4) + 5
    for index, bit in itertools.product(range(len(header_bytes)), range(8)):
        broken = bytearray(header_bytes)
        broken[index] ^= 1 << bit
        try:
            result = parse_proxy_header(bytes(broken), eof=True)
        except ProxyHeaderError:
            continue
        assert index == crc_type, f"flipping bit {bit} of byte {index} went unnoticed"
        assert isinstance(result, ProxyHeader)
        assert result.crc32c is None


def test_the_recorded_haproxy_crc32c_matches() -> None:
    data = (DATA / "haproxy-send-proxy-v2-tls-tlvs.bin").read_bytes()
    header = parse_all(data)
    assert header.tlvs[0].type == TlvType.CRC32C  # HAProxy sends it first
    assert header.crc32c == int.from_bytes(data[31:35], "big")
    zeroed = data[:31] + bytes(4) + data[35 : header.length]
    assert crc32c(zeroed) == header.crc32c


def test_length_limit() -> None:
    body = tlv(0xE0, b"x" * (DEFAULT_MAX_V2_LENGTH - 3))
    assert parse_all(v2(0x21, 0x00, body)).length == 16 + DEFAULT_MAX_V2_LENGTH
    longer = v2(0x21, 0x00, tlv(0xE0, b"x" * (DEFAULT_MAX_V2_LENGTH - 2)))
    with pytest.raises(ProxyHeaderError, match="over the limit of 4096"):
        parse_proxy_header(longer)
    # Refused on the fixed part alone: no waiting for 4 KiB that will be refused.
    with pytest.raises(ProxyHeaderError, match="over the limit"):
        parse_proxy_header(longer[:16])
    big = parse_proxy_header(longer, max_v2_length=65535)
    assert isinstance(big, ProxyHeader)
    assert big.length == len(longer)
    with pytest.raises(ProxyHeaderError, match="over the limit of 0"):
        parse_proxy_header(v2(0x21, 0x00, b"\x04\0\0"), max_v2_length=0)
    assert parse_proxy_header(v2(0x20, 0x00), max_v2_length=0) == parse_all(v2(0x20, 0x00))


def test_need_data_bounds() -> None:
    header = v2(0x21, 0x11, INET4 + tlv(0x01, b"h2"))
    assert need(b"", "v2").at_least == 16
    for size in range(1, 16):
        assert need(header[:size]) == need(header[:size], "v2")
        assert need(header[:size]).at_least == 16
        assert need(header[:size]).at_most == 16 + DEFAULT_MAX_V2_LENGTH
        assert need(header[:size], max_v2_length=100).at_most == 116
    for size in range(16, len(header)):
        wanted = need(header[:size])
        assert (wanted.at_least, wanted.at_most) == (len(header), len(header))


# (header bytes, fragment of the error). Each is complete: nothing is missing.
MALFORMED = [
    (b"\r\n\r\n\x00\r\nQUIT\r" + bytes(4), "bad PROXY v2 signature"),
    (b"\r\n\r\n\x01\r\nQUIT\n" + bytes(4), "bad PROXY v2 signature"),
    (b"\r\r" + bytes(14), "bad PROXY v2 signature"),
    (v2(0x11, 0x11, INET4), "version 1"),
    (v2(0x31, 0x11, INET4), "version 3"),
    (v2(0x01, 0x00), "version 0"),
    (v2(0xF1, 0x11, INET4), "version 15"),
    *[(v2(0x20 | command, 0x00), "unknown PROXY v2 command") for command in range(2, 16)],
    *[
        (v2(0x21, fam, bytes(216)), "unknown PROXY v2 address family")
        for fam in (0x01, 0x02, 0x03, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33, 0x41, 0xFF)
    ],
    (v2(0x21, 0x11, INET4[:11]), "shorter than its address block"),
    (v2(0x21, 0x12, b""), "shorter than its address block"),
    (v2(0x21, 0x21, INET6[:35]), "shorter than its address block"),
    (v2(0x21, 0x31, UNIX[:215]), "shorter than its address block"),
    (v2(0x21, 0x11, INET4 + b"\x01"), "truncated TLV header"),
    (v2(0x21, 0x11, INET4 + b"\x01\x00"), "truncated TLV header"),
    (v2(0x21, 0x11, INET4 + tlv(0x01, b"h2", size=3)), "declares 3 bytes, only 2 left"),
    (v2(0x21, 0x11, INET4 + tlv(0x01, b"", size=0xFFFF)), "declares 65535 bytes"),
    (v2(0x21, 0x00, tlv(0x01, b"h2") + tlv(0x02, b"", size=1)), "declares 1 bytes, only 0"),
    (v2(0x21, 0x00, tlv(0x03, b"\0\0\0")), "CRC32C TLV of 3 bytes"),
    (v2(0x21, 0x00, tlv(0x03, b"\0\0\0\0\0")), "CRC32C TLV of 5 bytes"),
    (v2(0x21, 0x00, tlv(0x03, b"\0\0\0\0")), "CRC32C mismatch"),
    *[
        (v2(0x21, 0x00, tlv(kind, value) + tlv(kind, value)), "duplicate PROXY v2 TLV")
        for kind, value in [
            (0x01, b"h2"),
            (0x02, b"a"),
            (0x05, b"id"),
            (0x20, bytes(5)),
            (0x30, b"ns"),
        ]
    ],
    (v2(0x21, 0x00, tlv(0x05, b"u" * 129)), "UNIQUE_ID of 129 bytes"),
    (v2(0x21, 0x00, tlv(0x02, b"\xff\xfe")), "is not utf-8"),
    (v2(0x21, 0x00, tlv(0x30, "ü".encode())), "is not ascii"),
    (v2(0x21, 0x00, tlv(0x20, bytes(4))), "SSL TLV of 4 bytes"),
    (v2(0x21, 0x00, tlv(0x20, bytes(5) + b"\x21\x00")), "truncated TLV header in the PROXY v2 SSL"),
    (v2(0x21, 0x00, tlv(0x20, bytes(5) + tlv(0x21, b"", size=9))), "declares 9 bytes"),
    (v2(0x21, 0x00, tlv(0x20, bytes(5) + tlv(0x22, b"a") * 2)), "duplicate PROXY v2 SSL sub-TLV"),
    (v2(0x21, 0x00, tlv(0x20, bytes(5) + tlv(0x21, "TLSv1.3é".encode()))), "is not ascii"),
    (v2(0x21, 0x00, tlv(0x20, bytes(5) + tlv(0x22, b"\xc3"))), "is not utf-8"),
]


@pytest.mark.parametrize(("data", "error"), MALFORMED, ids=lambda v: repr(v)[:40])
def test_malformed(data: bytes, error: str) -> None:
    with pytest.raises(ProxyHeaderError, match=error):
        parse_proxy_header(data + b"APPLICATION DATA")


def test_crc_mismatch_is_reported_before_other_tlv_problems() -> None:
    # A corrupted header should say "checksum", not whatever the corruption broke.
    body = tlv(0x03, b"\0\0\0\0") + tlv(0x02, b"\xff")
    with pytest.raises(ProxyHeaderError, match="CRC32C mismatch"):
        parse_proxy_header(v2(0x21, 0x00, body))


@pytest.mark.parametrize(
    ("prefix", "error"),
    [
        (b"\r\n\r\n\x00\r\nQUIx", "signature"),
        (b"\r\x00", "signature"),
        (V2_SIGNATURE + b"\x11", "version"),
        (V2_SIGNATURE + b"\x22", "command"),
        (V2_SIGNATURE + b"\x21\x14", "family"),
        (V2_SIGNATURE + b"\x21\x11\x00\x0b", "address block"),
        (V2_SIGNATURE + b"\x21\x00\xff\xff", "over the limit"),
    ],
)
def test_refused_as_soon_as_the_bytes_show_it(prefix: bytes, error: str) -> None:
    with pytest.raises(ProxyHeaderError, match=error):
        parse_proxy_header(prefix)
