"""The PROXY step on a socket pair, one call at a time: what it reads, what it leaves.

No server here: the step's ``advance`` is called by hand after each piece of
input, so every way a header can be split is tried deterministically, and
the socket is inspected after each call (a step that leaves peeked bytes
behind when it asks to wait would make a level-triggered selector spin).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from sockserve.engine.connection import Connection, NothingSent, Refused, StepFailed
from sockserve.engine.prepare import DONE, READ
from sockserve.protocols.proxy import Command, encode_v1, encode_v2
from sockserve.security.proxy import ProxyHeaderStep, TrustedProxies

from ._proxy_support import WAIT

PROXY_PEER = ("127.0.0.1", 40000)
REAL = ("192.0.2.10", 40123)
SERVICE = ("198.51.100.1", 7000)
V1 = encode_v1(REAL, SERVICE)
V2 = encode_v2(REAL, SERVICE, authority="example.com")
APP = b"\r\n\r\n\x00\r\nQUIT\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\napplication"


class Moves:
    """A stand-in for ``ConnectionTracker.readdress``: records, and refuses when told."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[Any] = []
        self.refuse = refuse

    def __call__(self, conn: Connection, address: Any) -> str | None:
        self.calls.append(address)
        if self.refuse is None:
            conn.client_address = address
        return self.refuse


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    with server, client:
        yield server, client


def make_step(
    mode: Any = "auto",
    trusted: list[str] | None = None,
    moves: Moves | None = None,
    refuse_untrusted: bool = False,
    unix: bool = False,
) -> ProxyHeaderStep:
    return ProxyHeaderStep(
        mode,
        TrustedProxies(["127.0.0.1/32"] if trusted is None else trusted, unix=unix),
        refuse_untrusted=refuse_untrusted,
        timeout=5.0,
        readdress=moves if moves is not None else Moves(),
        socket_of=lambda conn: conn.request,
    )


def pending(sock: socket.socket) -> bytes:
    """What is left to read in ``sock`` right now (without waiting)."""
    try:
        return sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_every_split_of_the_header_reads_it_exactly(
    pair: tuple[socket.socket, socket.socket], header: bytes
) -> None:
    server, client = pair
    for cut in range(1, len(header)):
        moves = Moves()
        step = make_step(moves=moves)
        conn = Connection(server, PROXY_PEER)
        client.sendall(header[:cut])
        assert step.advance(conn) == READ
        # What was looked at was taken out: waiting now waits for new bytes.
        assert pending(server) == b""
        client.sendall(header[cut:] + APP)
        assert step.advance(conn) == DONE
        assert moves.calls == [REAL]
        assert conn.proxy.source == REAL and conn.step_state is None
        assert server.recv(len(APP)) == APP  # not one application byte taken


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_one_byte_at_a_time(pair: tuple[socket.socket, socket.socket], header: bytes) -> None:
    server, client = pair
    step = make_step()
    conn = Connection(server, PROXY_PEER)
    for byte in header[:-1]:
        client.sendall(bytes([byte]))
        assert step.advance(conn) == READ
        assert pending(server) == b""
    client.sendall(header[-1:] + APP)
    assert step.advance(conn) == DONE
    assert conn.client_address == REAL
    assert pending(server) == APP


def test_nothing_there_yet_waits_without_reading(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    step = make_step()
    conn = Connection(server, PROXY_PEER)
    assert step.advance(conn) == READ
    assert step.advance(conn) == READ
    client.sendall(V1 + b"x")
    assert step.advance(conn) == DONE
    assert pending(server) == b"x"


def test_a_close_before_any_byte_is_nothing_sent(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    client.close()
    with pytest.raises(NothingSent):
        make_step().advance(Connection(server, PROXY_PEER))


def test_a_reset_before_any_byte_is_nothing_sent() -> None:
    """HAProxy ends its plain TCP checks with a reset: as quiet as a close."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(WAIT)
        with socket.create_connection(listener.getsockname(), WAIT) as peer:
            accepted, address = listener.accept()
            with accepted:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.close()  # linger 0: a reset
                with pytest.raises(NothingSent):
                    make_step().advance(Connection(accepted, address))


@pytest.mark.parametrize("ending", ["close", "reset"])
@pytest.mark.parametrize("header", [V1, encode_v2(command=Command.LOCAL)], ids=["v1", "local"])
def test_a_peer_gone_right_after_its_header_is_a_health_check(ending: str, header: bytes) -> None:
    """HAProxy's check-send-proxy checks: a header, then a reset at once. No client to serve."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(WAIT)
        with socket.create_connection(listener.getsockname(), WAIT) as peer:
            accepted, address = listener.accept()
            with accepted:
                peer.sendall(header)
                if ending == "reset":
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.close()
                moves = Moves()
                with pytest.raises(NothingSent):
                    make_step(moves=moves).advance(Connection(accepted, address))
                assert moves.calls == []  # not counted as a client


def test_a_close_inside_the_header_is_truncated(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    step = make_step()
    conn = Connection(server, PROXY_PEER)
    client.sendall(V2[:10])
    assert step.advance(conn) == READ
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(StepFailed) as failed:
        step.advance(conn)
    assert failed.value.kind == "proxy:truncated"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"hello\r\n", "proxy:missing"),
        (b"\x16\x03\x01\x02\x00", "proxy:missing"),  # a TLS ClientHello: no header configured
        (b"PROXY TCP5 x\r\n", "proxy:malformed"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "proxy:malformed"),
    ],
)
def test_bad_first_bytes_fail_by_kind(
    pair: tuple[socket.socket, ...], data: bytes, kind: str
) -> None:
    server, client = pair
    client.sendall(data)
    with pytest.raises(StepFailed) as failed:
        make_step().advance(Connection(server, PROXY_PEER))
    assert failed.value.kind == kind


def test_a_v2_header_on_a_v1_listener_is_malformed(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    client.sendall(V2)
    with pytest.raises(StepFailed) as failed:
        make_step("v1").advance(Connection(server, PROXY_PEER))
    assert failed.value.kind == "proxy:malformed"


def test_an_untrusted_peers_bytes_are_left_alone(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    client.sendall(V1 + b"data")
    moves = Moves()
    conn = Connection(server, ("192.0.2.99", 1))
    assert make_step(moves=moves).advance(conn) == DONE
    assert pending(server) == V1 + b"data"
    assert moves.calls == [] and conn.proxy is None and conn.client_address == ("192.0.2.99", 1)


def test_an_untrusted_peer_is_refused_without_a_read(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    client.sendall(V1)
    with pytest.raises(Refused) as refused:
        make_step(refuse_untrusted=True).advance(Connection(server, ("192.0.2.99", 1)))
    assert refused.value.reason == "proxy_untrusted"
    assert pending(server) == V1


def test_a_real_client_over_its_limit_is_refused(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    client.sendall(V1)
    conn = Connection(server, PROXY_PEER)
    with pytest.raises(Refused) as refused:
        make_step(moves=Moves(refuse="max_connections_per_ip")).advance(conn)
    assert refused.value.reason == "max_connections_per_ip"
    assert conn.client_address == REAL  # what the refusal's log line and reject_request name


@pytest.mark.parametrize(
    "header",
    [
        encode_v1(),
        encode_v2(command=Command.LOCAL),
        encode_v2(REAL, SERVICE, command=Command.LOCAL),
    ],
    ids=["v1-unknown", "v2-local", "v2-local-addresses"],
)
def test_headers_without_a_client_keep_the_peer(
    pair: tuple[socket.socket, ...], header: bytes
) -> None:
    server, client = pair
    client.sendall(header + b"x")
    moves = Moves()
    conn = Connection(server, PROXY_PEER)
    assert make_step(moves=moves).advance(conn) == DONE
    assert moves.calls == [] and conn.client_address == PROXY_PEER
    assert conn.proxy is not None and not conn.proxy.proxied
    assert pending(server) == b"x"
    assert conn.probe == (conn.proxy.command == Command.LOCAL)  # UNKNOWN is a client


def test_a_header_naming_the_connection_itself_is_the_proxys_probe(
    pair: tuple[socket.socket, ...],
) -> None:
    """HAProxy's v1 health checks name their own socket: a check, not a client."""
    server, client = pair
    client.sendall(encode_v1(PROXY_PEER, SERVICE) + b"x")
    moves = Moves()
    conn = Connection(server, PROXY_PEER)
    assert make_step(moves=moves).advance(conn) == DONE
    assert conn.probe and moves.calls == [] and conn.client_address == PROXY_PEER


def test_trusted_proxies() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", "::1/128"], unix=False)
    assert trusted.trusts(("10.1.2.3", 1))
    assert trusted.trusts(("::ffff:10.1.2.3", 1, 0, 0))  # a dual-stack listener's IPv4 peer
    assert trusted.trusts(("::1", 1, 0, 0))
    assert not trusted.trusts(("11.0.0.1", 1))
    assert not trusted.trusts("")  # a Unix peer on a listener said not to be Unix
    assert TrustedProxies(["*"], unix=False).trusts(("203.0.113.1", 1))
    assert TrustedProxies([], unix=True).trusts("")


def test_the_trust_table_stays_bounded() -> None:
    trusted = TrustedProxies(["10.0.0.0/8"], unix=False)
    for n in range(10_000):
        trusted.trusts((f"192.0.{n // 256}.{n % 256}", 1))
    assert len(trusted._known) <= 4096
