"""CRC32C (Castagnoli), the checksum of the PROXY protocol v2's ``PP2_TYPE_CRC32C`` TLV.

The PROXY protocol specifies CRC32C as in RFC 4960 (SCTP), appendix B: the
reflected polynomial 0x1EDC6F41 (0x82F63B78 bit-reversed), an initial value of
all ones and a final complement. That is a different polynomial from the
IEEE CRC-32 that ``zlib.crc32`` and ``binascii.crc32`` compute, so neither can
be used, and the standard library has no CRC32C of its own.

This is the plain one-table, one-byte-at-a-time algorithm: a Python loop costs
about 0.1 µs a byte, so a typical header with a few TLVs (under 300 bytes)
checks in tens of microseconds. That is acceptable because the parser only
computes it when a header carries the TLV, which senders add only on request
(HAProxy's ``proxy-v2-options crc32c``).
"""

from __future__ import annotations

__all__ = ["crc32c"]

# The reflected Castagnoli polynomial (RFC 4960 appendix B, RFC 3720 B.4).
_POLYNOMIAL = 0x82F63B78
_MASK = 0xFFFFFFFF


def _make_table() -> tuple[int, ...]:
    """The CRC of each byte value, so the loop shifts a byte at a time instead of a bit."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLYNOMIAL if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC32C of ``data``, continuing from ``crc`` (the result over earlier bytes).

    ``crc32c(b"123456789") == 0xE3069283`` (the standard check value), and
    ``crc32c(b + c) == crc32c(c, crc32c(b))``, so a checksum can be computed in
    pieces without joining them.
    """
    if not 0 <= crc <= _MASK:
        raise ValueError(f"crc must be an unsigned 32-bit value, not {crc!r}")
    if isinstance(data, memoryview):
        data = data.tobytes()
    table = _TABLE
    value = crc ^ _MASK
    for byte in data:
        value = table[(value ^ byte) & 0xFF] ^ (value >> 8)
    return value ^ _MASK
