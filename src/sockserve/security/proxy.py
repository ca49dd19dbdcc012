"""The PROXY protocol step: who the client really is, read from the load balancer's header.

A load balancer that relays connections (HAProxy ``send-proxy``, nginx
``proxy_protocol on``, an AWS NLB with proxy protocol v2) connects from its
own address; the first bytes it sends are a header naming the real client.
This step reads that header before any other step or handler, with the
sans-I/O parser of :mod:`sockserve.protocols.proxy`, and moves the connection
to the real client (``client_address``, the per-IP count), so that access
control, ``verify_request``, the handler and the access log all judge the
client and not the proxy.

Trust decides everything. A header is read only from a peer in
``proxy_trusted`` (loopback by default); from anyone else the bytes are data,
served as they came (``proxy_untrusted="serve"``), so a client cannot name
itself someone else by writing ``PROXY TCP4 ...`` first; or the connection is
refused (``"refuse"``). A trusted peer must send a valid header: one that
sends something else is failed (``proxy:missing`` when the bytes do not even
begin like a header, which is a proxy not configured to send one;
``proxy:malformed``; ``proxy:truncated`` when it closes inside the header;
``proxy:timeout`` after ``proxy_header_timeout``, which also bounds a peer
that dribbles its header a byte at a time). A trusted peer that closes (or
resets) before sending any byte is a load balancer's plain TCP health check,
and one that is already gone right after its header is a check that sends a
header (HAProxy ``check-send-proxy``: the header, then a reset): both end
quietly (outcome ``empty``), with no handler, no log line and no failure
counted.

On a Unix stream listener peers have no address to judge. A Unix peer is
trusted whenever ``proxy_protocol`` is on: whoever can connect was let in by
the socket file's owner and mode, the same local-only reach that makes
loopback trusted by default; a proxy on the same host is the only reason to
read headers on a Unix socket, and requiring ``*`` for it would make every
such deployment spell out a rule that decides nothing.

What the header says is applied as the specification asks: a PROXY command
with a known family replaces the client address; LOCAL (the proxy's own
health check), v1 ``UNKNOWN`` and v2 ``UNSPEC`` keep the proxy's address. A
LOCAL header, or one naming the connection's own source address (what
HAProxy's v1 health checks send), marks the connection as the proxy's own
probe: it takes no per-IP slot, and a reset that ends it is no error (HAProxy
resets every check connection, sometimes before, sometimes after the header
is read). The
header itself is kept on the connection (``server.connection_info(request)
.proxy``: addresses, TLVs).

How it reads, so that not one byte of the application's is taken: it peeks
(``MSG_PEEK``) as much as a header can take and, when a whole header is
there (the usual case: senders write it at once), receives exactly its
length; what follows stays in the socket for the handler, or for a TLS
handshake. When the peek shows only part of a header, those bytes are all
header bytes (the parser's lower bound says so): they are taken out of the
socket, so that waiting for more does not see them again and spin, and the
rest is read with reads no longer than the parser's lower bound of what is
missing. Each call makes only non-blocking system calls: the step is cheap
enough for the accepting thread.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

from sockserve._types import Address
from sockserve.engine.connection import Connection, NothingSent, Refused, StepFailed
from sockserve.engine.prepare import DONE, READ
from sockserve.errors import ProxyHeaderError
from sockserve.protocols.proxy import (
    DEFAULT_MAX_V2_LENGTH,
    V2_SIGNATURE,
    Command,
    Mode,
    NeedData,
    ProxyHeader,
    parse_proxy_header,
)
from sockserve.security.access import IPNetwork, ip_of

__all__ = ["ProxyHeaderStep", "TrustedProxies"]

# The C method: an IdleTimeoutSocket's own recv would turn EAGAIN into a timeout.
_recv = socket.socket.recv
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
_NOW = socket.MSG_DONTWAIT
_V1_START = b"PROXY "

#: Peer hosts whose trust is remembered; the table is emptied when full, so a
#: flood of distinct addresses costs a bounded dict and some re-parsing.
_TRUST_CACHE_SIZE = 4096


class TrustedProxies:
    """Which peers may send a PROXY header: ``proxy_trusted`` parsed (see the module doc)."""

    def __init__(self, rules: Sequence[str], *, unix: bool) -> None:
        self.everyone = "*" in rules
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(rule, strict=False) for rule in rules if rule != "*"
        )
        self._unix = unix
        self._known: dict[str, bool] = {}

    def trusts(self, peer: object) -> bool:
        """Whether ``peer`` (the address the socket reported) may send a header."""
        if self.everyone or self._unix:
            return True
        if not (isinstance(peer, tuple) and peer and isinstance(peer[0], str)):
            return False
        host = peer[0]
        known = self._known.get(host)
        if known is None:
            # Parsing an address and testing networks costs microseconds; the
            # same few proxies connect over and over, so remember the answer.
            ip = ip_of(peer)
            known = ip is not None and any(ip in network for network in self.networks)
            if len(self._known) >= _TRUST_CACHE_SIZE:
                self._known.clear()
            self._known[host] = known
        return known


def _gone(sock: socket.socket) -> bool:
    """Whether the peer has already closed or reset, without waiting (one peek)."""
    try:
        return not _recv(sock, 1, _PEEK)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _kind_of(data: bytes | bytearray, *, eof: bool) -> str:
    """The failure kind of bad header bytes: truncated, missing or malformed."""
    if eof:
        return "proxy:truncated"
    start = bytes(data[:12])
    if not (_V1_START.startswith(start[:6]) or V2_SIGNATURE.startswith(start)):
        return "proxy:missing"  # not a header at all: the proxy does not send one
    return "proxy:malformed"


class ProxyHeaderStep:
    """The pre-handler step that reads a trusted peer's PROXY header (see the module doc).

    ``readdress(conn, address)`` moves the connection to the real client and
    returns a refusal reason when the real client is over its per-IP limit
    (``ConnectionTracker.readdress``); ``socket_of(conn)`` gives the socket to
    read (the request itself, except for the async strategy's view of it).
    """

    name = "PROXY header"
    kind = "proxy"
    cheap = True
    #: A header still on its way is waited for where the connection will be
    #: served (a worker, for the pool and thread strategies), not on the
    #: preparer's thread: only trusted load balancers are waited for, they send
    #: at once, and the hop through another thread costs more than the wait.
    waits_in_place = True
    #: Its reads (a peek, then the exact header) are system calls that release
    #: the GIL: with a free worker they run there, not on the accepting thread
    #: (see ``ConnectionPipeline._worker_reads_first``).
    prefers_worker = True

    def __init__(
        self,
        mode: Mode,
        trusted: TrustedProxies,
        *,
        refuse_untrusted: bool,
        timeout: float,
        readdress: Callable[[Connection, Address], str | None],
        socket_of: Callable[[Connection], socket.socket],
        max_v2_length: int = DEFAULT_MAX_V2_LENGTH,
    ) -> None:
        self.mode: Mode = mode
        self.trusted = trusted
        self.refuse_untrusted = refuse_untrusted
        self.timeout: float | None = timeout
        self._readdress = readdress
        self._socket_of = socket_of
        self._max_v2_length = max_v2_length
        first = parse_proxy_header(b"", mode, max_v2_length=max_v2_length)
        assert isinstance(first, NeedData)
        #: The most a header can take: what one peek asks for.
        self._peek_size = first.at_most
        #: For the tracker: a trusted proxy's own address takes no per-IP slot
        #: at admission; its connections count under the real client once read.
        self.per_ip_exempt: Callable[[object], bool] = trusted.trusts

    def advance(self, conn: Connection) -> int:
        # conn.step_state: None before the first call; then the header bytes
        # taken out of the socket so far (a bytearray, empty if none yet).
        buf: bytearray | None = conn.step_state
        if buf is None and not self.trusted.trusts(conn.peer):
            if self.refuse_untrusted:
                raise Refused("proxy_untrusted")
            return DONE  # its bytes are data: never parsed
        sock = self._socket_of(conn)
        if not buf:
            # Nothing taken yet: one peek usually holds the whole header.
            try:
                data = _recv(sock, self._peek_size, _PEEK)
            except BlockingIOError:
                conn.step_state = bytearray()  # trusted; wait for its first bytes
                return READ
            except ConnectionResetError:
                data = b""  # the same health check, closed with a reset (HAProxy's way)
            if not data:
                conn.step_state = None
                raise NothingSent("closed before sending anything (a TCP health check)")
            try:
                result = parse_proxy_header(data, self.mode, max_v2_length=self._max_v2_length)
            except ProxyHeaderError as exc:
                raise StepFailed(_kind_of(data, eof=False), str(exc)) from None
            if type(result) is ProxyHeader:
                # Take out exactly the header: what follows is the application's.
                taken = _recv(sock, result.length, _NOW)
                if len(taken) == result.length:
                    return self._apply(conn, sock, result, more=len(data) > result.length)
                buf = bytearray(taken)
            else:
                # Part of a header: everything peeked is header bytes. Take it
                # out, so that waiting for more does not find it again.
                buf = bytearray(_recv(sock, len(data), _NOW))
            conn.step_state = buf
        return self._read_rest(conn, sock, buf)

    def _read_rest(self, conn: Connection, sock: socket.socket, buf: bytearray) -> int:
        """Read what the header still lacks, never more; apply it once complete."""
        while True:
            result = self._parse(buf, eof=False)
            if type(result) is ProxyHeader:
                # buf holds header bytes only (no read asked for more than the
                # parser's lower bound), so the header is all of it.
                return self._apply(conn, sock, result, more=False)
            assert isinstance(result, NeedData)
            try:
                chunk = _recv(sock, result.at_least - len(buf), _NOW)
            except BlockingIOError:
                return READ
            if not chunk:
                self._parse(buf, eof=True)  # raises: closed inside the header
            buf += chunk

    def _parse(self, data: bytes | bytearray, *, eof: bool) -> ProxyHeader | NeedData:
        try:
            return parse_proxy_header(data, self.mode, max_v2_length=self._max_v2_length, eof=eof)
        except ProxyHeaderError as exc:
            raise StepFailed(_kind_of(data, eof=eof), str(exc)) from None

    def _apply(
        self, conn: Connection, sock: socket.socket, header: ProxyHeader, *, more: bool
    ) -> int:
        """Serve the client ``header`` names; ``more``: bytes are known to follow it."""
        conn.step_state = None
        if not more and _gone(sock):
            # HAProxy's checks send a header (LOCAL, or its own addresses in v1)
            # and reset at once: a health check, not a client to serve.
            raise NothingSent("closed right after its PROXY header (a health check)")
        conn.proxy = header
        if header.command == Command.LOCAL or header.source == conn.peer:
            # The proxy's own connection: LOCAL, or (HAProxy's v1 checks) a header
            # naming the connection's own source. A health check: it keeps the
            # proxy's address, and its reset is no error (Connection.probe).
            conn.probe = True
        elif header.source is not None:  # PROXY with a known family: the real client
            reason = self._readdress(conn, header.source)
            if reason is not None:
                conn.client_address = header.source  # the refusal names the real client
                raise Refused(reason)
        return DONE
