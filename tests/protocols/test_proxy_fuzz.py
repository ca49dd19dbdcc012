"""Property tests and a seeded mutation run: whatever the bytes, the parser keeps its contract.

The contract (see the module docstring of sockserve.protocols.proxy): it
raises nothing but ProxyHeaderError; a NeedData asks for more than it was
given and never more than the size bound; a header claims no byte it was not
given, parses the same from its own bytes, and every shorter prefix of it is a
NeedData (so a refusal is never revised by later bytes, and no header is
accepted before it is whole). Encoders and parser round-trip.

Hypothesis runs derandomized, without an example database and with a fixed
``max_examples``, so CI is reproducible and the run is bounded; the mutation
run uses a seeded ``random.Random``. Work per parse is bounded by counting
Python function calls with ``sys.setprofile``, not by timing.
"""

from __future__ import annotations

import ipaddress
import os
import random
import string
import sys
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockserve.errors import ProxyHeaderError
from sockserve.protocols.proxy import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    Command,
    Mode,
    NeedData,
    ProxyHeader,
    SslInfo,
    TransportProtocol,
    encode_v1,
    encode_v2,
    parse_proxy_header,
)

from ._cases import ALL_CASES

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODES: list[Mode] = ["auto", "v1", "v2"]
LIMITS = [0, 16, 300, 4096, 65535]


def parse_checked(
    data: bytes, mode: Mode = "auto", max_v2_length: int = 4096, eof: bool = False
) -> ProxyHeader | NeedData | None:
    """Parse and check the contract; None when the data was refused."""
    try:
        result = parse_proxy_header(data, mode, max_v2_length=max_v2_length, eof=eof)
    except ProxyHeaderError:
        return None
    bound = V1_MAX_LENGTH if mode == "v1" else max(V1_MAX_LENGTH, 16 + max_v2_length)
    if isinstance(result, NeedData):
        assert not eof
        assert len(data) < result.at_least <= result.at_most <= bound
        return result
    assert 0 < result.length <= min(len(data), bound)
    assert result.version in (1, 2)
    assert (result.source is None) == (result.destination is None)
    assert result.proxied == (result.source is not None)
    whole = data[: result.length]
    assert parse_proxy_header(whole, mode, max_v2_length=max_v2_length) == result
    return result


def check_prefixes(data: bytes, mode: Mode = "auto", max_v2_length: int = 4096) -> None:
    """Refusals are final and headers are never accepted early."""
    result = parse_checked(data, mode, max_v2_length)
    end = result.length if isinstance(result, ProxyHeader) else len(data)
    refused_at = None
    for size in range(end):
        prefix = parse_checked(data[:size], mode, max_v2_length)
        if prefix is None:
            refused_at = size if refused_at is None else refused_at
            continue
        assert refused_at is None, f"refused at {refused_at} but not at {size}"
        assert isinstance(prefix, NeedData)
        if isinstance(result, ProxyHeader):
            assert prefix.at_least <= result.length <= prefix.at_most
    if refused_at is not None:
        assert result is None


# --- round trips -------------------------------------------------------------------------

ports = st.integers(0, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
inet_pairs = st.one_of(
    st.tuples(st.tuples(ipv4, ports), st.tuples(ipv4, ports)),
    st.tuples(st.tuples(ipv6, ports), st.tuples(ipv6, ports)),
)
unix_paths = st.one_of(
    st.binary(min_size=1, max_size=108).filter(lambda b: b"\0" not in b),
    st.binary(min_size=1, max_size=107)
    .filter(lambda b: not b.endswith(b"\0"))
    .map(lambda b: b"\0" + b),
)
ascii_text = st.text(alphabet=string.printable, max_size=40)
ssl_infos = st.builds(
    SslInfo.build,
    client=st.integers(0, 255),
    verify=st.integers(0, 2**32 - 1),
    version=st.none() | ascii_text,
    cn=st.none() | st.text(max_size=40),
    cipher=st.none() | ascii_text,
    sig_alg=st.none() | ascii_text,
    key_alg=st.none() | ascii_text,
    group=st.none() | ascii_text,
    sig_scheme=st.none() | ascii_text,
    client_cert=st.none() | st.binary(max_size=300),
    tlvs=st.lists(st.tuples(st.integers(0xE0, 0xFF), st.binary(max_size=20)), max_size=3),
)
custom_tlvs = st.lists(
    st.tuples(
        st.sampled_from([0x00, 0x04, 0x06, 0x1F, 0x21, 0x31, 0xE0, 0xEA, 0xEE, 0xEF, 0xF7, 0xFF]),
        st.binary(max_size=40),
    ),
    max_size=5,
)


def same_address(parsed: Any, original: Any) -> bool:
    if isinstance(original, bytes):
        if original.startswith(b"\0"):
            return bool(parsed == original)
        return os.fsencode(parsed) == original
    host, port = original[0], original[1]
    return bool(
        ipaddress.ip_address(parsed[0]) == ipaddress.ip_address(host)
        and parsed[1] == port
        and len(parsed) == (2 if ":" not in host else 4)
    )


@FUZZ
@given(pair=inet_pairs | st.none(), trailer=st.binary(max_size=20))
def test_v1_round_trip(pair: Any, trailer: bytes) -> None:
    wire = encode_v1(*pair) if pair else encode_v1()
    header = parse_checked(wire + trailer)
    assert isinstance(header, ProxyHeader)
    assert header.length == len(wire)
    if pair:
        assert same_address(header.source, pair[0])
        assert same_address(header.destination, pair[1])
    else:
        assert not header.proxied
    check_prefixes(wire)


v2_options = st.fixed_dictionaries(
    {
        "command": st.sampled_from(Command),
        "transport": st.sampled_from([TransportProtocol.STREAM, TransportProtocol.DGRAM]),
        "alpn": st.none() | st.binary(max_size=20),
        "authority": st.none() | st.text(max_size=60),
        "unique_id": st.none() | st.binary(max_size=128),
        "ssl": st.none() | ssl_infos,
        "netns": st.none() | ascii_text,
        "tlvs": custom_tlvs,
        "crc32c": st.booleans(),
    }
)


@FUZZ
@given(
    addresses=inet_pairs | st.tuples(unix_paths, unix_paths) | st.none(),
    options=v2_options,
    trailer=st.binary(max_size=20),
)
def test_v2_round_trip(addresses: Any, options: dict[str, Any], trailer: bytes) -> None:
    source, destination = addresses or (None, None)
    wire = encode_v2(source, destination, **options)
    header = parse_checked(wire + trailer, max_v2_length=65535)
    assert isinstance(header, ProxyHeader)
    assert (header.version, header.command, header.length) == (2, options["command"], len(wire))
    if addresses and options["command"] is Command.PROXY:
        assert header.transport is options["transport"]
        assert same_address(header.source, source)
        assert same_address(header.destination, destination)
    else:
        assert not header.proxied
    for name in ("alpn", "authority", "unique_id", "ssl", "netns"):
        assert getattr(header, name) == options[name], name
    assert (header.crc32c is not None) is options["crc32c"]
    tlvs = options["tlvs"]
    assert [(tlv.type, tlv.value) for tlv in header.tlvs[len(header.tlvs) - len(tlvs) :]] == tlvs


# --- arbitrary and mutated bytes -------------------------------------------------------------

STARTS = [
    b"",
    b"PROXY ",
    b"PROXY TCP4 ",
    b"PROXY TCP6 ",
    b"PROXY UNKNOWN",
    V2_SIGNATURE,
    V2_SIGNATURE + b"\x21",
    V2_SIGNATURE + b"\x21\x11",
    V2_SIGNATURE + b"\x20\x00",
]
v1_alphabet = st.text(alphabet="0123456789abcdefABCDEF:. \r\n", max_size=110).map(str.encode)


@FUZZ
@given(
    start=st.sampled_from(STARTS),
    rest=st.binary(max_size=300) | v1_alphabet,
    mode=st.sampled_from(MODES),
    limit=st.sampled_from(LIMITS),
    eof=st.booleans(),
)
def test_arbitrary_bytes(start: bytes, rest: bytes, mode: Mode, limit: int, eof: bool) -> None:
    data = start + rest
    parse_checked(data, mode, limit, eof)
    check_prefixes(data[:400], mode, limit)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random edit of the kinds that break parsers: bits, bytes, lengths, splices."""
    out = bytearray(data)
    where = rng.randrange(len(out) + 1)
    kind = rng.randrange(8)
    if kind == 0 and out:
        out[min(where, len(out) - 1)] ^= 1 << rng.randrange(8)
    elif kind == 1 and out:
        out[min(where, len(out) - 1)] = rng.choice(b"\x00\xff\r\n :.0123456789\x21\x11\x03")
    elif kind == 2:
        out[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    elif kind == 3:
        del out[where : where + rng.randint(1, 8)]
    elif kind == 4:
        del out[where:]
    elif kind == 5 and len(out) >= 16 and out.startswith(V2_SIGNATURE):
        out[14:16] = rng.randrange(65536).to_bytes(2, "big")
    elif kind == 6 and out:
        start = rng.randrange(len(out))
        out[where:where] = out[start : start + rng.randint(1, 16)]
    else:
        out[where:] = rng.choice(ALL_CASES).data[where:]
    return bytes(out)


@FUZZ
@given(case=st.sampled_from(ALL_CASES), seed=st.integers(0, 2**32), edits=st.integers(1, 4))
def test_mutated_fixtures(case: Any, seed: int, edits: int) -> None:
    rng = random.Random(seed)
    data = case.data
    for _ in range(edits):
        data = mutate(data, rng)
    check_prefixes(data)


class WorkCounter:
    """Counts the Python lines a call executes: a measure of work that ignores the machine's load.

    Loops count once per iteration (the CRC32C's per-byte loop included), so
    a bound linear in the input size catches quadratic behaviour.
    """

    def __init__(self) -> None:
        self.lines = 0

    def trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            self.lines += 1
        return self.trace

    def run(self, function: Callable[[], object]) -> int:
        sys.settrace(self.trace)
        try:
            function()
        except ProxyHeaderError:
            pass  # refusals cost work too; counted like the rest
        finally:
            sys.settrace(None)
        return self.lines


def test_seeded_mutation_run() -> None:
    rng = random.Random(20_240_601)
    corpus = [case.data for case in ALL_CASES] + [
        encode_v2(("2001:db8::1", 1), ("::ffff:10.0.0.1", 2), alpn=b"h2", crc32c=True),
        encode_v2("/run/a", b"\0b", tlvs=[(0x04, bytes(40))] * 3),
        encode_v2(tlvs=[(0xE0, b"")] * 1000),  # many TLVs: work stays linear
    ]
    outcomes: Counter[str] = Counter()
    work: list[tuple[int, int]] = []
    for index in range(20_000):
        data = rng.choice(corpus)
        for _ in range(rng.randint(1, 3)):
            data = mutate(data, rng)
        mode = rng.choice(MODES)
        limit = rng.choice(LIMITS)
        result = parse_checked(data, mode, limit, eof=rng.random() < 0.2)
        outcomes[type(result).__name__] += 1
        if index % 40 == 0:
            lines = WorkCounter().run(
                lambda d=data, m=mode, n=limit: parse_proxy_header(d, m, max_v2_length=n)
            )
            work.append((len(data), lines))
    # Every outcome is common enough for the run to exercise it.
    assert min(outcomes[name] for name in ("ProxyHeader", "NeedData", "NoneType")) > 1000
    # Work is linear in the input: a few lines per TLV (or per byte, in the
    # CRC32C), a bounded number for the rest.
    assert max(lines - 8 * size for size, lines in work) <= 200
    assert max(lines for _, lines in work) > 3000  # the many-TLVs header was measured
