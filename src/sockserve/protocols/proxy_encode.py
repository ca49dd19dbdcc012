"""Encoders of PROXY protocol headers: for test clients, benchmarks and fuzzing.

The parser in :mod:`sockserve.protocols.proxy` accepts every header these
produce (its tests check the round trip); :func:`encode_v2` can also add raw
TLVs unchecked, so tests can build odd but well-framed headers. Arguments that
cannot be encoded raise ``ValueError`` or ``TypeError``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from sockserve.protocols.crc32c import crc32c as _crc32c
from sockserve.protocols.proxy_header import (
    _V2_FIXED,
    _V2_PORTS,
    UNIQUE_ID_MAX_LENGTH,
    UNIX_PATH_LENGTH,
    V2_FIXED_LENGTH,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    Address,
    AddressFamily,
    Command,
    SslInfo,
    TlvType,
    TransportProtocol,
    _encode_tlvs,
)

__all__ = ["encode_v1", "encode_v2"]


def encode_v1(source: Address | None = None, destination: Address | None = None) -> bytes:
    """A v1 line: ``TCP4``/``TCP6`` for (host, port) addresses, ``UNKNOWN`` without any.

    Both addresses must be IP addresses of the same family; IPv6 ones may be
    4-tuples (flowinfo and scope id are not sent). Text is canonical (IPv6
    compressed), so the parser accepts every line this returns.
    """
    if source is None and destination is None:
        return b"PROXY UNKNOWN\r\n"
    if source is None or destination is None:
        raise ValueError("give both addresses or neither (UNKNOWN)")
    src, sport = _ip_address(source, "source")
    dst, dport = _ip_address(destination, "destination")
    if src.version != dst.version:
        raise ValueError(f"source and destination families differ: {source!r}, {destination!r}")
    proto = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {proto} {src.compressed} {dst.compressed} {sport} {dport}\r\n".encode("ascii")


def encode_v2(
    source: Address | None = None,
    destination: Address | None = None,
    *,
    command: Command = Command.PROXY,
    transport: TransportProtocol = TransportProtocol.STREAM,
    alpn: bytes | None = None,
    authority: str | None = None,
    unique_id: bytes | None = None,
    ssl: SslInfo | None = None,
    netns: str | None = None,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """A v2 header; the family follows from the addresses.

    (host, port) addresses give INET or INET6, ``str``/``bytes`` ones a Unix
    socket path (at most 108 bytes; bytes starting with NUL are abstract), and
    no addresses the UNSPEC family (a LOCAL health check is
    ``encode_v2(command=Command.LOCAL)``). ``transport`` is STREAM or DGRAM
    when there are addresses. TLVs go in the order of the arguments, ``tlvs``
    (raw, unchecked: useful to build odd headers in tests) last; with
    ``crc32c=True`` a CRC32C TLV goes first and is filled in.
    """
    command = Command(command)
    fam, block = _encode_addresses(source, destination, TransportProtocol(transport))
    entries: list[tuple[int, bytes]] = []
    if crc32c:
        entries.append((TlvType.CRC32C, b"\0\0\0\0"))
    if alpn is not None:
        entries.append((TlvType.ALPN, bytes(alpn)))
    if authority is not None:
        entries.append((TlvType.AUTHORITY, authority.encode("utf-8")))
    if unique_id is not None:
        if len(unique_id) > UNIQUE_ID_MAX_LENGTH:
            raise ValueError(f"unique_id is {len(unique_id)} bytes, over {UNIQUE_ID_MAX_LENGTH}")
        entries.append((TlvType.UNIQUE_ID, bytes(unique_id)))
    if ssl is not None:
        entries.append((TlvType.SSL, ssl.encode()))
    if netns is not None:
        entries.append((TlvType.NETNS, netns.encode("ascii")))
    entries.extend(tlvs)
    body = block + _encode_tlvs(entries)
    if len(body) > V2_MAX_LENGTH:
        raise ValueError(f"a v2 header holds at most {V2_MAX_LENGTH} bytes, not {len(body)}")
    header = _V2_FIXED.pack(V2_SIGNATURE, 0x20 | command, fam, len(body)) + body
    if crc32c:
        where = V2_FIXED_LENGTH + len(block) + 3
        checksum = _crc32c(header).to_bytes(4, "big")
        header = header[:where] + checksum + header[where + 4 :]
    return header


def _ip_address(
    address: Address, what: str
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError(f"{what} must be a (host, port) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(host, str) or type(port) is not int:
        raise TypeError(f"{what} must be (str, int), not {address!r}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} port out of range: {port}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} host is not an IP address: {host!r}") from None
    if len(address) == 4 and ip.version != 6:
        raise ValueError(f"{what}: a 4-tuple address must be IPv6, not {host!r}")
    return ip, port


def _unix_field(path: str | bytes, what: str) -> bytes:
    raw = os.fsencode(path)
    if len(raw) > UNIX_PATH_LENGTH:
        raise ValueError(f"{what} path is {len(raw)} bytes, over {UNIX_PATH_LENGTH}")
    return raw.ljust(UNIX_PATH_LENGTH, b"\0")


def _encode_addresses(
    source: Address | None, destination: Address | None, transport: TransportProtocol
) -> tuple[int, bytes]:
    """The family/transport byte and the address block."""
    if source is None and destination is None:
        return 0x00, b""
    if source is None or destination is None:
        raise ValueError("give both addresses or neither (UNSPEC)")
    if transport is TransportProtocol.UNSPEC:
        raise ValueError("addresses need a STREAM or DGRAM transport")
    if isinstance(source, str | bytes) and isinstance(destination, str | bytes):
        block = _unix_field(source, "source") + _unix_field(destination, "destination")
        return AddressFamily.UNIX << 4 | transport, block
    src, sport = _ip_address(source, "source")
    dst, dport = _ip_address(destination, "destination")
    if src.version != dst.version:
        raise ValueError(f"source and destination families differ: {source!r}, {destination!r}")
    family = AddressFamily.INET if src.version == 4 else AddressFamily.INET6
    block = src.packed + dst.packed + _V2_PORTS.pack(sport, dport)
    return family << 4 | transport, block
