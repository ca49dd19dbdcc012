"""Sans-I/O protocol code: bytes in, a result or "need more data" out.

Nothing in this package imports ``socket`` or touches a file descriptor. The
server's connection pipeline does the reading (usually with ``MSG_PEEK``) and
hands the bytes over; each parser enforces its own maximum size, tells exactly
how many bytes it used, and raises a :class:`sockserve.errors.PeerError`
subclass for malformed input, so the same code runs under the selector
thread, under asyncio, in tests and in fuzzers.

- :mod:`sockserve.protocols.proxy`: the PROXY protocol (HAProxy), v1 and v2.
- :mod:`sockserve.protocols.crc32c`: the checksum the PROXY protocol v2 uses.
"""
