"""The PROXY protocol (HAProxy), versions 1 and 2: a sans-I/O parser.

A proxy that relays a connection (HAProxy ``send-proxy``/``send-proxy-v2``,
nginx ``proxy_protocol on``, AWS NLB, stunnel...) prepends one header that
tells the real client's and server's addresses. This module turns the first
bytes of a connection into a :class:`ProxyHeader`, or says how many more bytes
it needs, and never reads past the header: ``header.length`` is exactly the
number of bytes the header takes, so everything after it stays the
application's. The specification is ``doc/proxy-protocol.txt`` in HAProxy's
repository; section numbers below refer to it.

The contract of :func:`parse_proxy_header`, which the server's pipeline and the
tests rely on:

- It takes everything received (or peeked) so far, from the first byte of the
  connection, and returns a :class:`ProxyHeader` when a complete header is
  there, or a :class:`NeedData` whose ``at_least`` is a lower bound of the
  header's total length and ``at_most`` an upper bound.
- ``at_least`` is never more than the real header's length, so reading
  ``at_least - len(data)`` more bytes can never swallow application data. A
  non-blocking caller needs no ``MSG_PEEK`` at all::

      buf = bytearray()
      while not isinstance(result := parse_proxy_header(buf, "auto"), ProxyHeader):
          wait_until_readable(sock, deadline)        # bounded by proxy_header_timeout
          chunk = sock.recv(result.at_least - len(buf))
          if not chunk:
              parse_proxy_header(buf, "auto", eof=True)  # raises ProxyHeaderError
          buf += chunk
      assert result.length == len(buf)  # exactly the header was consumed

  That loop takes 3 reads for a v2 header; a v1 line's end can only be
  bounded field by field, so it takes 5-8 reads for a usual TCP4 line (and
  up to ~50 for a 107-byte UNKNOWN line, whose rest is free text).

  A caller that prefers one system call in the usual case (the specification
  asks senders to send the header at once) peeks ``at_most`` bytes first, then
  ``recv(result.length)`` to drop the header; on :class:`NeedData` after a peek
  it must not wait for readability again (the peeked bytes keep the socket
  readable and a level-triggered selector would spin) but consume the peeked
  bytes, which are all header bytes since ``at_least > len(data)``, and go on
  as above.
- Input that cannot start a valid header raises :class:`ProxyHeaderError` as
  soon as it is seen (a wrong first byte, a bad signature, version, command or
  family, a v1 line with a character its fields cannot contain, a length over
  the limit), not after waiting for more bytes. With ``eof=True`` (the peer
  closed, or a datagram, which must carry the whole header) an incomplete
  header raises too.
- The size is bounded: a v1 line is at most 107 bytes with its CRLF (section
  2.1); a v2 header is 16 bytes plus its length field, which must not exceed
  ``max_v2_length`` (:data:`DEFAULT_MAX_V2_LENGTH`, 4 KiB, by default; the
  field itself allows 65535). Raise it only for proxies that send large TLVs,
  such as client certificates.
- Malformed input raises :class:`ProxyHeaderError` (a
  :class:`~sockserve.errors.PeerError`: the peer's fault, close the
  connection); bad arguments raise ``TypeError``/``ValueError``.

Addresses come in the shapes ``socket`` uses for ``getpeername()``, so they can
replace a request's ``client_address`` as they are: ``("192.0.2.1", 56324)``
for IPv4, ``("2001:db8::1", 56324, 0, 0)`` for IPv6 (in the RFC 5952 text
``inet_ntop`` gives, ``::ffff:192.0.2.1`` for IPv4-mapped addresses, whatever
the v1 text spelled), a ``str`` path for a Unix socket (``""`` when unnamed)
and ``bytes`` starting with NUL for a Linux abstract one. Only
:attr:`ProxyHeader.proxied` headers carry addresses: the v2 LOCAL command (a
proxy's own health check), v1 ``UNKNOWN`` and the v2 ``UNSPEC`` family all
mean "keep the connection's real addresses".

No ``socket`` import: the module is pure computation, so it fuzzes well and
runs unchanged under threads, asyncio or a test.
"""

from __future__ import annotations

import ipaddress
import os
import re
import struct
from typing import Final, NoReturn

from sockserve.errors import ProxyHeaderError
from sockserve.protocols.crc32c import crc32c as _crc32c
from sockserve.protocols.proxy_encode import encode_v1, encode_v2
from sockserve.protocols.proxy_header import (
    _SINGLE_SSL_SUBTYPES,
    _SINGLE_TLVS,
    _TEXT_SSL_SUBTYPES,
    _TEXT_TLVS,
    _V2_PORTS,
    DEFAULT_MAX_V2_LENGTH,
    UNIQUE_ID_MAX_LENGTH,
    UNIX_PATH_LENGTH,
    V1_MAX_LENGTH,
    V2_FIXED_LENGTH,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    Address,
    AddressFamily,
    Command,
    Mode,
    NeedData,
    ProxyHeader,
    SslClient,
    SslInfo,
    SslSubtype,
    Tlv,
    TlvType,
    TransportProtocol,
)

__all__ = [
    "DEFAULT_MAX_V2_LENGTH",
    "UNIQUE_ID_MAX_LENGTH",
    "V1_MAX_LENGTH",
    "V2_MAX_LENGTH",
    "V2_SIGNATURE",
    "Address",
    "AddressFamily",
    "Command",
    "Mode",
    "NeedData",
    "ProxyHeader",
    "ProxyHeaderError",
    "SslClient",
    "SslInfo",
    "SslSubtype",
    "Tlv",
    "TlvType",
    "TransportProtocol",
    "encode_v1",
    "encode_v2",
    "parse_proxy_header",
]


def parse_proxy_header(
    data: bytes | bytearray | memoryview,
    mode: Mode = "auto",
    *,
    max_v2_length: int = DEFAULT_MAX_V2_LENGTH,
    eof: bool = False,
) -> ProxyHeader | NeedData:
    """Parse the PROXY header at the start of ``data``; see the module docstring.

    ``data`` is everything received so far from the connection's first byte;
    bytes after the header are ignored (``result.length`` says where it ends).
    ``mode`` picks the version the listener accepts. ``eof`` means no more bytes
    will come (the peer closed, or ``data`` is a whole datagram): an incomplete
    header then raises instead of returning :class:`NeedData`.
    """
    if mode not in ("auto", "v1", "v2"):
        raise ValueError(f"mode must be 'v1', 'v2' or 'auto', not {mode!r}")
    if type(max_v2_length) is not int or not 0 <= max_v2_length <= V2_MAX_LENGTH:
        raise ValueError(f"max_v2_length must be an int in 0..65535, not {max_v2_length!r}")
    if not isinstance(data, bytes):
        if not isinstance(data, bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        # Copy at most what a header can take: the results must not alias a
        # buffer the caller will reuse, and a huge buffer must not be copied.
        data = bytes(memoryview(data).cast("B")[: V2_FIXED_LENGTH + max_v2_length])
    if not data:
        result: ProxyHeader | NeedData = NeedData(
            V2_FIXED_LENGTH if mode == "v2" else _V1_MIN_UNKNOWN,
            V1_MAX_LENGTH if mode == "v1" else max(V1_MAX_LENGTH, V2_FIXED_LENGTH + max_v2_length),
        )
    elif data[0] == 0x50 and mode != "v2":  # "P"
        result = _parse_v1(data)
    elif data[0] == 0x0D and mode != "v1":  # "\r"
        result = _parse_v2(data, max_v2_length)
    else:
        expected = {"v1": "a PROXY v1 line", "v2": "a PROXY v2 header"}.get(mode, "a PROXY header")
        raise ProxyHeaderError(f"expected {expected}, got {_quote(data)}")
    if eof and type(result) is NeedData:
        raise ProxyHeaderError(
            f"connection closed inside the PROXY header after {len(data)} bytes: {_quote(data)}"
        )
    return result


def _quote(data: bytes, limit: int = 24) -> str:
    """A short, safe rendering of peer bytes for an error message."""
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


# --- version 1 -----------------------------------------------------------------------------

_V1_PREFIX: Final = b"PROXY "
_V1_MIN_UNKNOWN: Final = len(b"PROXY UNKNOWN\r\n")
# Each v1 protocol: its token (with the space before the fields), the
# characters its fields may hold, the shortest each of the four fields can
# be and the longest (a prefix that breaks these cannot become a valid line).
_V1_FIELDS: Final = {
    b"TCP4 ": (b"0123456789. ", (7, 7, 1, 1), (15, 15, 5, 5)),
    b"TCP6 ": (b"0123456789abcdefABCDEF:. ", (2, 2, 1, 1), (45, 45, 5, 5)),
}
_OCTET: Final = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_TEXT: Final = rb"(" + _OCTET + rb"(?:\." + _OCTET + rb"){3})"
_PORT_TEXT: Final = rb"(0|[1-9][0-9]{0,4})"
# Whole lines (without CRLF): the regular expression does the strict part of
# the validation (single spaces, no leading zeros, octets in 0-255) in C.
_V1_TCP4: Final = re.compile(
    rb"PROXY TCP4 " + _IPV4_TEXT + b" " + _IPV4_TEXT + b" " + _PORT_TEXT + b" " + _PORT_TEXT
)
_V1_TCP6: Final = re.compile(
    rb"PROXY TCP6 ([0-9A-Fa-f:.]{2,45}) ([0-9A-Fa-f:.]{2,45}) " + _PORT_TEXT + b" " + _PORT_TEXT
)


def _parse_v1(data: bytes) -> ProxyHeader | NeedData:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        return _v1_incomplete(data)
    return _v1_line(data[:end], end + 2)


def _v1_line(line: bytes, length: int) -> ProxyHeader:
    """A whole v1 line (``line`` without its CRLF), validated."""
    if line.startswith(b"PROXY TCP4 "):
        match = _V1_TCP4.fullmatch(line)
        if match is None:
            _v1_refuse(line)
        src, dst, sport, dport = match.groups()
        source: Address = (src.decode("ascii"), _v1_port(sport))
        destination: Address = (dst.decode("ascii"), _v1_port(dport))
        family = AddressFamily.INET
    elif line.startswith(b"PROXY TCP6 "):
        match = _V1_TCP6.fullmatch(line)
        if match is None:
            _v1_refuse(line)
        src, dst, sport, dport = match.groups()
        source = (_v1_ipv6(src), _v1_port(sport), 0, 0)
        destination = (_v1_ipv6(dst), _v1_port(dport), 0, 0)
        family = AddressFamily.INET6
    elif line == b"PROXY UNKNOWN" or line.startswith(b"PROXY UNKNOWN "):
        # Section 2.1: the rest of an UNKNOWN line is ignored, but a lone CR or
        # LF in it is still not a line the sender can have meant.
        if b"\r" in line or b"\n" in line:
            _v1_refuse(line)
        return ProxyHeader(
            1, Command.PROXY, AddressFamily.UNSPEC, TransportProtocol.UNSPEC, None, None, length
        )
    else:
        _v1_refuse(line)
    stream = TransportProtocol.STREAM
    return ProxyHeader(1, Command.PROXY, family, stream, source, destination, length)


def _v1_refuse(line: bytes) -> NoReturn:
    """Raise for a bad line, naming the first thing wrong with it."""
    if b"\r" in line or b"\n" in line:
        raise ProxyHeaderError(f"PROXY v1 line with a CR or LF not in a CRLF: {line!r}")
    if not line.startswith(_V1_PREFIX):
        raise ProxyHeaderError(f"expected a PROXY v1 line, got {line!r}")
    protocol = line[len(_V1_PREFIX) :].split(b" ", 1)[0]
    if protocol not in (b"TCP4", b"TCP6") or line == _V1_PREFIX + protocol:
        raise ProxyHeaderError(f"unknown PROXY v1 protocol (TCP4, TCP6, UNKNOWN): {line!r}")
    raise ProxyHeaderError(f"malformed PROXY v1 {protocol.decode()} line: {line!r}")


def _v1_port(text: bytes) -> int:
    port = int(text)
    if port > 0xFFFF:
        raise ProxyHeaderError(f"PROXY v1 port out of range: {port}")
    return port


def _v1_ipv6(text: bytes) -> str:
    try:
        packed = ipaddress.IPv6Address(text.decode("ascii")).packed
    except ValueError:
        raise ProxyHeaderError(f"invalid IPv6 address in a PROXY v1 line: {text!r}") from None
    return _format_ipv6(packed)


def _v1_incomplete(data: bytes) -> NeedData:
    """No CRLF yet: raise if ``data`` cannot begin a valid line, else bound its length."""
    size = len(data)
    if size >= V1_MAX_LENGTH:
        raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes: {_quote(data)}")
    if not data.startswith(_V1_PREFIX[:size]):
        raise ProxyHeaderError(f"expected a PROXY v1 line, got {_quote(data)}")
    if data.endswith(b"\r"):
        # Only a LF can come next, which would complete the line: judge it now.
        _v1_line(data[:-1], size + 1)
        return NeedData(size + 1, size + 1)
    if b"\r" in data or b"\n" in data:
        raise ProxyHeaderError(f"PROXY v1 line with a CR or LF not in a CRLF: {_quote(data)}")
    rest = data[len(_V1_PREFIX) :]
    candidates = []
    if b"UNKNOWN".startswith(rest[:7]):
        if len(rest) > 7 and rest[7] != 0x20:
            raise ProxyHeaderError(f"unknown PROXY v1 protocol: {_quote(data)}")
        candidates.append(_V1_MIN_UNKNOWN if len(rest) < 7 else size + 2)
    for token, (charset, shortest, longest) in _V1_FIELDS.items():
        if token.startswith(rest[:5]):
            missing = _v1_fields_missing(data, rest[5:], charset, shortest, longest)
            candidates.append(len(_V1_PREFIX) + len(token) + len(rest[5:]) + missing)
    if not candidates:
        raise ProxyHeaderError(f"unknown PROXY v1 protocol: {_quote(data)}")
    at_least = max(min(candidates), size + 1)
    if at_least > V1_MAX_LENGTH:
        # Even the shortest way to finish the line breaks the limit.
        raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes: {_quote(data)}")
    return NeedData(at_least, V1_MAX_LENGTH)


def _v1_fields_missing(
    data: bytes,
    fields: bytes,
    charset: bytes,
    shortest: tuple[int, ...],
    longest: tuple[int, ...],
) -> int:
    """How many bytes at least a line needs after ``fields`` (CRLF included); raise if
    no valid line starts with them."""
    parts = fields.split(b" ")
    if fields.translate(None, charset) or len(parts) > 4:
        raise ProxyHeaderError(f"malformed PROXY v1 line: {_quote(data, 64)}")
    for index, part in enumerate(parts):
        complete = index < len(parts) - 1
        if len(part) > longest[index] or (complete and not part):
            raise ProxyHeaderError(f"malformed PROXY v1 line: {_quote(data, 64)}")
    current = len(parts) - 1
    missing = max(shortest[current] - len(parts[current]), 0)
    missing += sum(shortest[current + 1 :]) + (3 - current)  # later fields and their spaces
    return missing + 2  # CRLF


# --- version 2 -----------------------------------------------------------------------------

# The family/transport bytes section 2.2 lists, with the size of their address
# block; any other value must be rejected.
_V2_FAMILIES: Final = {
    0x00: (AddressFamily.UNSPEC, TransportProtocol.UNSPEC, 0),
    0x11: (AddressFamily.INET, TransportProtocol.STREAM, 12),
    0x12: (AddressFamily.INET, TransportProtocol.DGRAM, 12),
    0x21: (AddressFamily.INET6, TransportProtocol.STREAM, 36),
    0x22: (AddressFamily.INET6, TransportProtocol.DGRAM, 36),
    0x31: (AddressFamily.UNIX, TransportProtocol.STREAM, 2 * UNIX_PATH_LENGTH),
    0x32: (AddressFamily.UNIX, TransportProtocol.DGRAM, 2 * UNIX_PATH_LENGTH),
}


def _v2_check_fixed(data: bytes, max_v2_length: int) -> int:
    """Check what is there of the 16-byte fixed part; the declared length once known."""
    size = len(data)
    if not data.startswith(V2_SIGNATURE[: min(size, 12)]):
        raise ProxyHeaderError(f"bad PROXY v2 signature: {_quote(data, 16)}")
    if size > 12:
        version, command = data[12] >> 4, data[12] & 0x0F
        if version != 2:
            raise ProxyHeaderError(f"unsupported PROXY protocol version {version} (expected 2)")
        if command > 1:
            raise ProxyHeaderError(f"unknown PROXY v2 command 0x{command:x}")
    if size > 13 and data[13] not in _V2_FAMILIES:
        raise ProxyHeaderError(f"unknown PROXY v2 address family/transport 0x{data[13]:02x}")
    if size < V2_FIXED_LENGTH:
        return -1
    length: int = data[14] << 8 | data[15]
    if length > max_v2_length:
        raise ProxyHeaderError(
            f"PROXY v2 header declares {length} bytes after its fixed part, over the "
            f"limit of {max_v2_length}"
        )
    if data[12] & 0x0F == Command.PROXY and length < _V2_FAMILIES[data[13]][2]:
        raise ProxyHeaderError(
            f"PROXY v2 length {length} is shorter than its address block "
            f"({_V2_FAMILIES[data[13]][2]} bytes for family 0x{data[13]:02x})"
        )
    return length


def _parse_v2(data: bytes, max_v2_length: int) -> ProxyHeader | NeedData:
    # The usual header takes the first branch: one signature comparison and a
    # few integer tests. Anything else goes through _v2_check_fixed, which
    # names the problem or says how much is missing.
    if len(data) >= V2_FIXED_LENGTH and data.startswith(V2_SIGNATURE):
        ver_cmd, fam = data[12], data[13]
        length = data[14] << 8 | data[15]
        entry = _V2_FAMILIES.get(fam)
        if (
            entry is None
            or length > max_v2_length
            or not ((ver_cmd == 0x21 and length >= entry[2]) or ver_cmd == 0x20)
        ):
            _v2_check_fixed(data, max_v2_length)
            raise AssertionError("unreachable: _v2_check_fixed raises")  # pragma: no cover
    elif _v2_check_fixed(data, max_v2_length) < 0:
        return NeedData(V2_FIXED_LENGTH, V2_FIXED_LENGTH + max_v2_length)
    else:
        # A valid fixed part, length within the limits, but not all of it
        # here: ask for exactly the rest.
        total = V2_FIXED_LENGTH + (data[14] << 8 | data[15])
        return NeedData(total, total)
    total = V2_FIXED_LENGTH + length
    if len(data) < total:
        return NeedData(total, total)
    family, transport, block = entry
    source: Address | None = None
    destination: Address | None = None
    if ver_cmd == 0x21:  # PROXY: the addresses are the client's and the server's
        if fam >> 4 == AddressFamily.INET:
            sport, dport = _V2_PORTS.unpack_from(data, 24)
            d = _DECIMAL
            source = (f"{d[data[16]]}.{d[data[17]]}.{d[data[18]]}.{d[data[19]]}", sport)
            destination = (f"{d[data[20]]}.{d[data[21]]}.{d[data[22]]}.{d[data[23]]}", dport)
        elif fam >> 4 == AddressFamily.INET6:
            sport, dport = _V2_PORTS.unpack_from(data, 48)
            source = (_format_ipv6(data[16:32]), sport, 0, 0)
            destination = (_format_ipv6(data[32:48]), dport, 0, 0)
        elif block:
            middle = V2_FIXED_LENGTH + UNIX_PATH_LENGTH
            source = _unix_path(data[V2_FIXED_LENGTH:middle])
            destination = _unix_path(data[middle : middle + UNIX_PATH_LENGTH])
        command = Command.PROXY
    else:
        # LOCAL: the addresses are optional and ignored (section 2.2); when
        # the length is too short for the family's block, there is none and
        # whatever follows the fixed part is TLVs.
        if length < block:
            block = 0
        command = Command.LOCAL
    if block == length:
        return ProxyHeader(2, command, family, transport, source, destination, total)
    tlvs, ssl = _v2_tlvs(data, V2_FIXED_LENGTH + block, total)
    return ProxyHeader(2, command, family, transport, source, destination, total, tlvs, ssl)


# The decimal text of each byte value: the fastest way to format an IPv4 address.
_DECIMAL: Final = tuple(str(value) for value in range(256))
_HEXTETS: Final = struct.Struct("!8H")
_MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"
# ":0:0:" ... ":0:0:0:0:0:0:0:0:", longest first: runs of zero groups to compress.
_ZERO_RUNS: Final = tuple(":" + "0:" * run for run in range(8, 1, -1))


def _format_ipv6(packed: bytes) -> str:
    """RFC 5952 text of a 16-byte IPv6 address, as Linux's ``getpeername()`` gives it.

    Lowercase, no leading zeros, the longest run of two or more zero groups
    (the first one on a tie) as ``::``, and IPv4-mapped addresses in dotted form
    (``::ffff:192.0.2.1``), so a dual-stack listener sees the same text in a
    header as from the socket. ``ipaddress`` takes several times as long, and
    prints mapped addresses differently before Python 3.13.
    """
    if packed.startswith(_MAPPED_PREFIX):
        d = _DECIMAL
        return f"::ffff:{d[packed[12]]}.{d[packed[13]]}.{d[packed[14]]}.{d[packed[15]]}"
    # Colons around every group, so that ":0:" always is a whole zero group;
    # str.find does the searching in C, the longest run first.
    text = ":%x:%x:%x:%x:%x:%x:%x:%x:" % _HEXTETS.unpack(packed)  # noqa: UP031 (fastest)
    for run in _ZERO_RUNS:
        where = text.find(run)
        if where >= 0:
            # Drop the outer colons that are not part of the "::".
            return text[1:where] + "::" + text[where + len(run) : -1]
    return text[1:-1]


def _unix_path(raw: bytes) -> str | bytes:
    """A ``sun_path`` as ``socket`` reports it: str, "" if unnamed, bytes if abstract."""
    if raw[0] == 0:
        # A fixed 108-byte field loses an abstract name's trailing NULs; they
        # cannot be told from padding, so they are dropped.
        name = raw.rstrip(b"\0")
        return name if name else ""
    return os.fsdecode(raw.split(b"\0", 1)[0])


def _split_tlvs(data: bytes, offset: int, end: int, where: str) -> list[tuple[int, int, int]]:
    """(type, start, stop) of each TLV in ``data[offset:end]``, which they must fill exactly."""
    found = []
    while offset < end:
        if end - offset < 3:
            raise ProxyHeaderError(f"truncated TLV header in {where}: {end - offset} bytes left")
        start = offset + 3
        stop = start + (data[offset + 1] << 8 | data[offset + 2])
        if stop > end:
            raise ProxyHeaderError(
                f"TLV 0x{data[offset]:02x} in {where} declares {stop - start} bytes, "
                f"only {end - start} left"
            )
        found.append((data[offset], start, stop))
        offset = stop
    return found


def _decode_text(value: bytes, encoding: str, what: str) -> None:
    try:
        value.decode(encoding)
    except UnicodeDecodeError:
        raise ProxyHeaderError(f"{what} is not {encoding}: {_quote(value)}") from None


def _v2_tlvs(data: bytes, offset: int, end: int) -> tuple[tuple[Tlv, ...], SslInfo | None]:
    """The TLVs of a complete header ``data[:end]``, checksum verified first."""
    spans = _split_tlvs(data, offset, end, "the PROXY v2 header")
    seen: set[int] = set()
    for kind, start, stop in spans:
        if kind in _SINGLE_TLVS:
            if kind in seen:
                raise ProxyHeaderError(f"duplicate PROXY v2 TLV 0x{kind:02x}")
            seen.add(kind)
        if kind == TlvType.CRC32C:
            _check_crc32c(data, start, stop, end)
    tlvs = tuple(Tlv(kind, data[start:stop]) for kind, start, stop in spans)
    ssl = None
    for kind, value in tlvs:
        if kind == TlvType.UNIQUE_ID and len(value) > UNIQUE_ID_MAX_LENGTH:
            raise ProxyHeaderError(
                f"PROXY v2 UNIQUE_ID of {len(value)} bytes (at most {UNIQUE_ID_MAX_LENGTH})"
            )
        if kind in _TEXT_TLVS:
            _decode_text(value, _TEXT_TLVS[kind], f"PROXY v2 TLV 0x{kind:02x}")
        elif kind == TlvType.SSL:
            ssl = _v2_ssl(value)
    return tlvs, ssl


def _check_crc32c(data: bytes, start: int, stop: int, end: int) -> None:
    """Section 2.2.3: the CRC32C of the whole header with the checksum's 4 bytes zeroed."""
    if stop - start != 4:
        raise ProxyHeaderError(f"PROXY v2 CRC32C TLV of {stop - start} bytes (must be 4)")
    expected = int.from_bytes(data[start:stop], "big")
    actual = _crc32c(data[stop:end], _crc32c(b"\0\0\0\0", _crc32c(data[:start])))
    if actual != expected:
        raise ProxyHeaderError(
            f"PROXY v2 CRC32C mismatch: header says 0x{expected:08x}, computed 0x{actual:08x}"
        )


def _v2_ssl(value: bytes) -> SslInfo:
    if len(value) < 5:
        raise ProxyHeaderError(f"PROXY v2 SSL TLV of {len(value)} bytes (at least 5)")
    spans = _split_tlvs(value, 5, len(value), "the PROXY v2 SSL TLV")
    seen: set[int] = set()
    subs = []
    for kind, start, stop in spans:
        sub = value[start:stop]
        if kind in _SINGLE_SSL_SUBTYPES:
            if kind in seen:
                raise ProxyHeaderError(f"duplicate PROXY v2 SSL sub-TLV 0x{kind:02x}")
            seen.add(kind)
            encoding = _TEXT_SSL_SUBTYPES.get(kind)
            if encoding is not None:
                _decode_text(sub, encoding, f"PROXY v2 SSL sub-TLV 0x{kind:02x}")
        subs.append(Tlv(kind, sub))
    return SslInfo(SslClient(value[0]), int.from_bytes(value[1:5], "big"), tuple(subs))
