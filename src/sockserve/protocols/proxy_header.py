"""The values of the PROXY protocol: constants, enums and the parsed header's types.

Split from :mod:`sockserve.protocols.proxy` (the parser) and
:mod:`sockserve.protocols.proxy_encode` (the encoders), which both build these;
import them from :mod:`sockserve.protocols.proxy`, which re-exports them all.
Section numbers refer to ``doc/proxy-protocol.txt`` in HAProxy's repository.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Final, Literal, NamedTuple, TypeAlias

__all__ = [
    "DEFAULT_MAX_V2_LENGTH",
    "UNIQUE_ID_MAX_LENGTH",
    "UNIX_PATH_LENGTH",
    "V1_MAX_LENGTH",
    "V2_FIXED_LENGTH",
    "V2_MAX_LENGTH",
    "V2_SIGNATURE",
    "Address",
    "AddressFamily",
    "Command",
    "Mode",
    "NeedData",
    "ProxyHeader",
    "SslClient",
    "SslInfo",
    "SslSubtype",
    "Tlv",
    "TlvType",
    "TransportProtocol",
]

#: A v1 line's maximum size, CRLF included (section 2.1: the worst case UNKNOWN line).
V1_MAX_LENGTH: Final = 107
#: The fixed part of a v2 header: signature, version/command, family, length.
V2_FIXED_LENGTH: Final = 16
#: The v2 header's first 12 bytes (section 2.2).
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
#: The largest value the v2 length field can hold.
V2_MAX_LENGTH: Final = 0xFFFF
#: The default bound on the v2 length field: room for addresses and the TLVs
#: HAProxy or a cloud load balancer send (typically under 300 bytes), while a
#: peer cannot make the server hold 64 KiB per pending connection.
DEFAULT_MAX_V2_LENGTH: Final = 4096
#: ``PP2_TYPE_UNIQUE_ID`` values are "up to 128 bytes" (section 2.2.5).
UNIQUE_ID_MAX_LENGTH: Final = 128
#: The size of each address of the v2 AF_UNIX family (``sun_path``).
UNIX_PATH_LENGTH: Final = 108

# The v2 wire layout: the fixed part, and the ports after the IP addresses.
_V2_FIXED: Final = struct.Struct("!12sBBH")
_V2_PORTS: Final = struct.Struct("!HH")

#: What :func:`parse_proxy_header` accepts: one version, or either ("auto",
#: told apart by the first byte). The specification forbids guessing whether a
#: header is there at all, so there is no "optional" mode.
Mode: TypeAlias = Literal["v1", "v2", "auto"]
#: A socket-style address: (host, port) for IPv4, (host, port, flowinfo,
#: scope_id) for IPv6, a path for Unix sockets (bytes for abstract names).
Address: TypeAlias = tuple[str, int] | tuple[str, int, int, int] | str | bytes


class Command(IntEnum):
    """The v2 command (the low nibble of byte 13); v1 headers are all PROXY."""

    #: The proxy's own connection (a health check): keep the real addresses.
    LOCAL = 0x0
    #: A relayed connection: the header's addresses are the client's and server's.
    PROXY = 0x1


class AddressFamily(IntEnum):
    """The v2 address family (high nibble of byte 14). Wire values, not ``socket.AF_*``."""

    UNSPEC = 0x0
    INET = 0x1
    INET6 = 0x2
    UNIX = 0x3


class TransportProtocol(IntEnum):
    """The v2 transport (low nibble of byte 14). Wire values, not ``socket.SOCK_*``."""

    UNSPEC = 0x0
    STREAM = 0x1
    DGRAM = 0x2


class TlvType(IntEnum):
    """The registered v2 TLV types (section 2.2). Others are kept raw."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    NETNS = 0x30


class SslSubtype(IntEnum):
    """The sub-TLV types inside a ``PP2_TYPE_SSL`` TLV (section 2.2.6)."""

    VERSION = 0x21
    CN = 0x22
    CIPHER = 0x23
    SIG_ALG = 0x24
    KEY_ALG = 0x25
    GROUP = 0x26
    SIG_SCHEME = 0x27
    CLIENT_CERT = 0x28


class SslClient(IntFlag):
    """The ``client`` bit field of the SSL TLV; unknown bits are kept."""

    #: The client connected over SSL/TLS.
    SSL = 0x01
    #: The client presented a certificate on this connection.
    CERT_CONN = 0x02
    #: The client presented a certificate at least once in this TLS session.
    CERT_SESS = 0x04


class Tlv(NamedTuple):
    """One type-length-value entry, as received (``value`` is bytes)."""

    type: int
    value: bytes


# TLV types that may appear once: two AUTHORITY or two CRC32C TLVs would leave
# the receiver to pick one, and a proxy and the server might not pick the same.
_SINGLE_TLVS: Final = frozenset(TlvType) - {TlvType.NOOP}
_SINGLE_SSL_SUBTYPES: Final = frozenset(SslSubtype)
# Text TLVs and how the specification encodes them.
_TEXT_TLVS: Final[dict[int, str]] = {TlvType.AUTHORITY: "utf-8", TlvType.NETNS: "ascii"}
_TEXT_SSL_SUBTYPES: Final[dict[int, str]] = {
    SslSubtype.VERSION: "ascii",
    SslSubtype.CN: "utf-8",
    SslSubtype.CIPHER: "ascii",
    SslSubtype.SIG_ALG: "ascii",
    SslSubtype.KEY_ALG: "ascii",
    SslSubtype.GROUP: "ascii",
    SslSubtype.SIG_SCHEME: "ascii",
}


def _first(tlvs: tuple[Tlv, ...], kind: int) -> bytes | None:
    for tlv in tlvs:
        if tlv.type == kind:
            return tlv.value
    return None


@dataclass(frozen=True, slots=True)
class SslInfo:
    """The ``PP2_TYPE_SSL`` TLV: how the client reached the proxy over TLS.

    ``tlvs`` holds every sub-TLV as received; the properties decode the
    registered ones (validated when the header was parsed, so they never raise).
    """

    client: SslClient
    #: Zero when the client's certificate was verified (see :attr:`client_cert_verified`).
    verify: int
    tlvs: tuple[Tlv, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        client: SslClient | int = SslClient.SSL,
        verify: int = 0,
        version: str | None = None,
        cn: str | None = None,
        cipher: str | None = None,
        sig_alg: str | None = None,
        key_alg: str | None = None,
        group: str | None = None,
        sig_scheme: str | None = None,
        client_cert: bytes | None = None,
        tlvs: Iterable[tuple[int, bytes]] = (),
    ) -> SslInfo:
        """An SslInfo from its fields, for :func:`encode_v2` (``tlvs`` are extra sub-TLVs)."""
        if not 0 <= verify <= 0xFFFFFFFF:
            raise ValueError(f"verify must be an unsigned 32-bit value, not {verify!r}")
        if not 0 <= int(client) <= 0xFF:
            raise ValueError(f"client must fit in one byte, not {client!r}")
        texts = (
            (SslSubtype.VERSION, version),
            (SslSubtype.CN, cn),
            (SslSubtype.CIPHER, cipher),
            (SslSubtype.SIG_ALG, sig_alg),
            (SslSubtype.KEY_ALG, key_alg),
            (SslSubtype.GROUP, group),
            (SslSubtype.SIG_SCHEME, sig_scheme),
        )
        subs = [Tlv(kind, text.encode(_TEXT_SSL_SUBTYPES[kind])) for kind, text in texts if text]
        if client_cert is not None:
            subs.append(Tlv(SslSubtype.CLIENT_CERT, bytes(client_cert)))
        subs.extend(Tlv(kind, bytes(value)) for kind, value in tlvs)
        return cls(SslClient(int(client)), verify, tuple(subs))

    def encode(self) -> bytes:
        """The TLV's value on the wire: client, verify, then the sub-TLVs."""
        return struct.pack("!BI", int(self.client), self.verify) + _encode_tlvs(self.tlvs)

    def _text(self, kind: SslSubtype) -> str | None:
        value = _first(self.tlvs, kind)
        return None if value is None else value.decode(_TEXT_SSL_SUBTYPES[kind])

    @property
    def version(self) -> str | None:
        """The TLS version, e.g. ``"TLSv1.3"``."""
        return self._text(SslSubtype.VERSION)

    @property
    def cn(self) -> str | None:
        """The Common Name of the client certificate's subject."""
        return self._text(SslSubtype.CN)

    @property
    def cipher(self) -> str | None:
        """The cipher, e.g. ``"ECDHE-RSA-AES128-GCM-SHA256"``."""
        return self._text(SslSubtype.CIPHER)

    @property
    def sig_alg(self) -> str | None:
        """The algorithm that signed the proxy's certificate, e.g. ``"RSA-SHA256"``."""
        return self._text(SslSubtype.SIG_ALG)

    @property
    def key_alg(self) -> str | None:
        """The algorithm of the proxy certificate's key, e.g. ``"RSA2048"``."""
        return self._text(SslSubtype.KEY_ALG)

    @property
    def group(self) -> str | None:
        """The key exchange group, e.g. ``"secp256r1"``."""
        return self._text(SslSubtype.GROUP)

    @property
    def sig_scheme(self) -> str | None:
        """The handshake's signature scheme, e.g. ``"rsa_pss_rsae_sha256"``."""
        return self._text(SslSubtype.SIG_SCHEME)

    @property
    def client_cert(self) -> bytes | None:
        """The client's certificate (DER), when the proxy is configured to send it."""
        return _first(self.tlvs, SslSubtype.CLIENT_CERT)

    @property
    def client_cert_verified(self) -> bool:
        """The client presented a certificate and the proxy verified it.

        ``verify == 0`` alone is not enough: HAProxy sends 0 when no certificate
        was presented at all, so the certificate flags are checked too.
        """
        presented = self.client & (SslClient.CERT_CONN | SslClient.CERT_SESS)
        return bool(presented) and self.verify == 0


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete, valid PROXY header.

    ``source`` and ``destination`` are set only when :attr:`proxied` is true.
    ``tlvs`` lists every v2 TLV in wire order (NOOP and CRC32C included); the
    properties decode the registered ones, validated at parse time.
    """

    #: 1 or 2.
    version: int
    command: Command
    family: AddressFamily
    transport: TransportProtocol
    #: The client's address (where the proxied connection came from).
    source: Address | None
    #: The address the client connected to (on the proxy).
    destination: Address | None
    #: The header's size in bytes: what to consume; what follows is application data.
    length: int
    tlvs: tuple[Tlv, ...] = ()
    #: The parsed ``PP2_TYPE_SSL`` TLV, if any.
    ssl: SslInfo | None = None

    @property
    def proxied(self) -> bool:
        """True when the addresses replace the connection's (PROXY with a known family).

        False for LOCAL (the proxy's own health check), v1 UNKNOWN and v2
        UNSPEC: the specification says to use the real connection's endpoints.
        """
        return self.source is not None

    def client_address(self, real: Address) -> Address:
        """The address to treat as the client's: the header's when proxied, else ``real``."""
        return real if self.source is None else self.source

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or None."""
        return _first(self.tlvs, kind)

    @property
    def tlv_map(self) -> dict[int, bytes]:
        """Every TLV type mapped to its first value, e.g. ``tlv_map.get(0xEA)`` (AWS)."""
        found: dict[int, bytes] = {}
        for kind, value in self.tlvs:
            found.setdefault(kind, value)
        return found

    @property
    def alpn(self) -> bytes | None:
        """``PP2_TYPE_ALPN``: the protocol negotiated with the client, e.g. ``b"h2"``."""
        return _first(self.tlvs, TlvType.ALPN)

    @property
    def authority(self) -> str | None:
        """``PP2_TYPE_AUTHORITY``: the host name the client asked for (TLS SNI)."""
        value = _first(self.tlvs, TlvType.AUTHORITY)
        return None if value is None else value.decode("utf-8")

    @property
    def unique_id(self) -> bytes | None:
        """``PP2_TYPE_UNIQUE_ID``: the proxy's opaque connection id (at most 128 bytes)."""
        return _first(self.tlvs, TlvType.UNIQUE_ID)

    @property
    def netns(self) -> str | None:
        """``PP2_TYPE_NETNS``: the network namespace the proxy accepted the client in."""
        value = _first(self.tlvs, TlvType.NETNS)
        return None if value is None else value.decode("ascii")

    @property
    def crc32c(self) -> int | None:
        """``PP2_TYPE_CRC32C``: the header's checksum, already verified by the parser."""
        value = _first(self.tlvs, TlvType.CRC32C)
        return None if value is None else int.from_bytes(value, "big")


@dataclass(frozen=True, slots=True)
class NeedData:
    """Not a complete header yet: the bytes so far are a valid beginning of one.

    The header's total length (from the connection's first byte) is known to be
    between ``at_least`` and ``at_most``; ``at_least > len(data)``. For v2 both
    are exact once the 16-byte fixed part is in.
    """

    at_least: int
    at_most: int


def _encode_tlvs(entries: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for kind, value in entries:
        if not 0 <= kind <= 0xFF:
            raise ValueError(f"TLV type must fit in one byte, not {kind!r}")
        if len(value) > V2_MAX_LENGTH:
            raise ValueError(f"TLV 0x{kind:02x} value of {len(value)} bytes is too long")
        out += struct.pack("!BH", kind, len(value))
        out += value
    return bytes(out)
