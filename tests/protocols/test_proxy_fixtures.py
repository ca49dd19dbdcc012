"""The wire fixtures, fed whole, byte by byte, with trailing data and through read loops.

Every valid fixture must parse to its expected header whatever way its bytes
arrive, and the parser must never claim or ask for a byte past the header:
that is what lets the server leave the application's bytes in the socket.
"""

from __future__ import annotations

import pytest

from sockserve.errors import PeerError, ProxyHeaderError
from sockserve.protocols.proxy import (
    V1_MAX_LENGTH,
    NeedData,
    ProxyHeader,
    parse_proxy_header,
)

from ._cases import INVALID, VALID, Case, check_expected, need, parse_all

TRAILERS = [
    b"",
    b"\r\n",
    b"hello\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c",
    bytes(range(256)) * 20,
]


def header_bytes(case: Case) -> bytes:
    assert case.expect is not None
    header = parse_all(case.data, case.mode)
    return case.data[: header.length]


def test_fixtures_are_there() -> None:
    assert len(VALID) >= 20
    assert len(INVALID) >= 5
    assert any(case.name.startswith("haproxy-") for case in VALID)


@pytest.mark.parametrize("case", VALID, ids=str)
def test_whole(case: Case) -> None:
    assert case.expect is not None
    header = parse_all(case.data, case.mode)
    check_expected(header, case.expect)
    assert 0 < header.length <= len(case.data)
    # The header alone gives the same result: nothing after it was needed.
    assert parse_all(case.data[: header.length], case.mode) == header


@pytest.mark.parametrize("case", VALID, ids=str)
def test_in_its_own_version_mode(case: Case) -> None:
    header = parse_all(case.data)
    own = "v1" if header.version == 1 else "v2"
    other = "v2" if header.version == 1 else "v1"
    assert parse_all(case.data, own) == header
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(case.data, other)


@pytest.mark.parametrize("case", VALID, ids=str)
def test_byte_by_byte(case: Case) -> None:
    data = header_bytes(case)
    whole = parse_all(data, case.mode)
    for size in range(len(data)):
        wanted = need(data[:size], case.mode)
        # The bounds are sound: never past the real end, never short of it.
        assert size < wanted.at_least <= len(data) <= wanted.at_most, size
        with pytest.raises(ProxyHeaderError, match="closed inside the PROXY header"):
            parse_proxy_header(data[:size], case.mode, eof=True)
    assert parse_all(data, case.mode) == whole
    assert parse_proxy_header(data, case.mode, eof=True) == whole


@pytest.mark.parametrize("trailer", TRAILERS, ids=lambda t: repr(t[:12]))
@pytest.mark.parametrize("case", VALID, ids=str)
def test_trailing_data_is_not_consumed(case: Case, trailer: bytes) -> None:
    data = header_bytes(case)
    header = parse_all(data + trailer, case.mode)
    assert header == parse_all(data, case.mode)
    assert header.length == len(data)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("case", VALID, ids=str)
def test_buffer_types(case: Case, kind: type) -> None:
    header = parse_all(case.data, case.mode)
    other = parse_proxy_header(kind(case.data), case.mode)
    assert other == header
    assert isinstance(other, ProxyHeader)
    # Nothing in the result aliases the caller's (reusable) buffer.
    assert all(type(tlv.value) is bytes for tlv in other.tlvs)


class FakeSocket:
    """recv()/peek() over fixed bytes, at most ``chunk`` bytes a call, like a slow network."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data = data
        self.chunk = chunk
        self.calls = 0

    def recv(self, size: int, *, peek: bool = False) -> bytes:
        assert size > 0
        self.calls += 1
        out = self.data[: min(size, self.chunk)]
        if not peek:
            self.data = self.data[len(out) :]
        return out


def read_header_exactly(sock: FakeSocket) -> ProxyHeader:
    """The module docstring's loop: read only bytes the parser knows are header bytes."""
    buf = bytearray()
    while True:
        result = parse_proxy_header(buf)
        if isinstance(result, ProxyHeader):
            return result
        chunk = sock.recv(result.at_least - len(buf))
        if not chunk:
            parse_proxy_header(buf, eof=True)
        buf += chunk


def read_header_peeking(sock: FakeSocket) -> ProxyHeader:
    """Peek first; on a partial header consume what was peeked and read exactly."""
    peeked = sock.recv(V1_MAX_LENGTH * 100, peek=True)
    result = parse_proxy_header(peeked)
    if isinstance(result, ProxyHeader):
        assert sock.recv(result.length) == peeked[: result.length]
        return result
    assert result.at_least > len(peeked)  # every peeked byte belongs to the header
    sock.recv(len(peeked))
    return read_header_exactly_from(sock, bytearray(peeked))


def read_header_exactly_from(sock: FakeSocket, buf: bytearray) -> ProxyHeader:
    while not isinstance(result := parse_proxy_header(buf), ProxyHeader):
        assert isinstance(result, NeedData)
        buf += sock.recv(result.at_least - len(buf))
    return result


@pytest.mark.parametrize("chunk", [1, 2, 7, 16, 4096])
@pytest.mark.parametrize("case", [c for c in VALID if c.mode == "auto"], ids=str)
def test_read_loops_leave_application_bytes(case: Case, chunk: int) -> None:
    data = header_bytes(case) + b"APPLICATION"
    whole = parse_all(data)
    calls = {}
    for reader in (read_header_exactly, read_header_peeking):
        sock = FakeSocket(data, chunk)
        assert reader(sock) == whole
        assert sock.data == b"APPLICATION"
        assert sock.calls <= whole.length + 1  # at most one call per header byte
        calls[reader] = sock.calls
    if chunk >= 4096:
        # The header arrived whole: peek + consume. Reading exactly takes 3
        # calls for v2 (15 bytes, 1, the rest); a v1 line's end can only be
        # bounded field by field (6 calls for HAProxy's TCP4 lines), and an
        # UNKNOWN line's rest is free text, so each call there gets 2 bytes.
        assert calls[read_header_peeking] == 2
        assert calls[read_header_exactly] <= (3 if whole.version == 2 else V1_MAX_LENGTH // 2)


@pytest.mark.parametrize("case", VALID, ids=str)
def test_exact_read_loop_detects_eof(case: Case) -> None:
    data = header_bytes(case)[:-1]
    with pytest.raises(ProxyHeaderError):
        read_header_exactly(FakeSocket(data, 4096))


@pytest.mark.parametrize("case", INVALID, ids=str)
def test_invalid(case: Case) -> None:
    assert case.error is not None
    with pytest.raises(ProxyHeaderError, match=case.error) as info:
        parse_proxy_header(case.data, case.mode)
    assert isinstance(info.value, PeerError)
    assert not isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "case", [c for c in INVALID if c.error == "expected a PROXY header"], ids=str
)
def test_not_a_header_is_rejected_on_the_first_byte(case: Case) -> None:
    with pytest.raises(ProxyHeaderError, match=case.error or ""):
        parse_proxy_header(case.data[:1], case.mode)
