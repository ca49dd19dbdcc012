"""Which servers the suite knows, what each one is, and which protocols it speaks.

This module is metadata only: it imports no framework, so the harness process
stays free of gevent, uvloop and sockserve (each server runs in its own
subprocess, see :mod:`benchmarks.servers`, and availability is probed there).

Adding a kind (say sockserve's coming ``AsyncUDPServer``, once it exists):

1. A :class:`ServerSpec` below: a name whose prefix picks the dispatcher in
   ``servers.serve`` (``sockserve-``/``stdlib-`` for the socketserver API,
   ``asyncio-``/``uvloop-``, ``gevent``), the family (plot colours; the
   ``sockserve`` family is what ``--compare-rev`` runs at other revisions),
   one sentence per protocol saying what runs, and ``protocols``.
2. For a socketserver-API kind, one line per protocol in
   ``servers._SOCKETSERVER_CLASSES`` naming the class (``("sockserve-async",
   "udp"): "AsyncUDPServer"``), and, if it needs a handler of its own (an
   async datagram handler), that handler in ``sockserve_handlers`` -- defined
   only when the sockserve being imported has its base class, so older
   revisions still import -- returned by ``servers._handler_class``.
   Other frameworks get a ``serve_*`` function in ``servers``.
3. Nothing else: the probe reports it unavailable where the class is missing,
   the matrix runs it on every cell of its protocols (a cell's ``servers``
   list or the spec's ``skips`` narrow that), and the report picks it up.

TLS for another sockserve kind: add "tls" to the kind's ``protocols`` here
with a ``tls=`` sentence, and the kind to ``servers._TLS_KEYWORD`` (a
socketserver-API class: it gets ``ssl_context=servers.tls_context()``, built
from the certificate the harness generated, as a constructor keyword); the
runner kinds take ``--certfile``/``--keyfile``. The TLS cells, the
certificate handling and the report need no change; ``--compare-rev`` then
compares TLS across revisions too (a revision without TLS reports the kind
unavailable).

Do not add a kind for code that does not exist yet: it would show as "not
available" in every report until then.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: The protocols a server may take part in. "shutdown" is not a wire protocol:
#: it marks the servers with the socketserver API whose ``shutdown()`` latency
#: can be measured in-process.
PROTOCOLS = ("tcp", "udp", "http", "shutdown", "tls")

#: Every ratio in the report is relative to this server, measured in the same round.
BASELINE = "stdlib-threading-somaxconn"


@dataclass(frozen=True)
class ServerSpec:
    """One server under test.

    ``protocols`` lists what the kind can serve at all; whether it is really
    available on this machine (sockserve's later strategies, optional peers)
    is decided at run time by the probe.
    """

    name: str
    family: str
    tcp: str
    udp: str = ""
    http: str = ""
    tls: str = ""
    protocols: tuple[str, ...] = ("tcp",)
    #: workload keys (cell keys or workload names) this kind sits out, with why
    skips: tuple[tuple[str, str], ...] = ()
    #: "v1"/"v2": the server reads PROXY protocol headers and the load generator
    #: opens each connection with one, as a load balancer would ("": neither)
    proxy_header: str = ""
    #: Registered with sockserve.observability.metrics (per-connection histograms on).
    metrics: bool = False

    def describe(self, proto: str) -> str:
        """What implements ``proto`` for this kind, in the words of its API."""
        return {"tcp": self.tcp, "udp": self.udp, "http": self.http, "tls": self.tls}.get(
            proto, self.tcp
        )

    def skip_reason(self, workload: str, cell_key: str) -> str | None:
        """Why this kind does not run ``cell_key`` (None: it does)."""
        for key, reason in self.skips:
            if key in (workload, cell_key):
                return reason
        return None


_SOCKSERVE_PROTOS = ("tcp", "udp", "http", "shutdown")
#: The PROXY kinds measure what a header costs per connection: churn shows it;
#: round trips on open connections, bursts and idle memory would only repeat
#: their plain kind's numbers.
_PROXY_SKIPS = (
    ("pingpong", "one header per connection: round trips on open connections never see it"),
    ("burst", "measured on the plain kind; the header's cost shows in churn"),
    ("idle", "measured on the plain kind; the header's cost shows in churn"),
)

#: The metrics kinds measure the per-connection recorder: churn shows its cost,
#: round trips on open connections show that they pay nothing; bursts and idle
#: memory would only repeat their plain kind's numbers.
_METRICS_SKIPS = (
    ("burst", "measured on the plain kind; the recorder's cost shows in churn"),
    ("idle", "measured on the plain kind; the recorder's cost shows in churn"),
)

SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        name="sockserve-threading",
        family="sockserve",
        tcp="sockserve.ThreadingTCPServer + BaseRequestHandler (recv/sendall loop)",
        udp="sockserve.ThreadingUDPServer + BaseRequestHandler (sendto)",
        http="sockserve.ThreadingTCPServer + http.server.BaseHTTPRequestHandler",
        protocols=_SOCKSERVE_PROTOS,
    ),
    ServerSpec(
        name="sockserve-pool",
        family="sockserve",
        tcp="sockserve.ThreadPoolTCPServer (bounded pool, defaults)",
        udp="sockserve.ThreadPoolUDPServer (bounded pool, defaults)",
        http="sockserve.ThreadPoolTCPServer + http.server.BaseHTTPRequestHandler",
        tls="sockserve.ThreadPoolTCPServer(..., ssl_context=ctx) (the handshake on the"
        " pre-handler thread, then a pool worker)",
        protocols=(*_SOCKSERVE_PROTOS, "tls"),
    ),
    ServerSpec(
        name="sockserve-forking",
        family="sockserve",
        tcp="sockserve.ForkingTCPServer (a process per connection, max_children default)",
        protocols=("tcp", "shutdown"),
    ),
    ServerSpec(
        name="sockserve-async",
        family="sockserve",
        tcp="sockserve.AsyncTCPServer + AsyncStreamRequestHandler (reader.read / writer.write"
        " + drain; uvloop when installed)",
        udp="sockserve.AsyncUDPServer + AsyncDatagramRequestHandler (reply; uvloop when installed)",
        tls="sockserve.AsyncTCPServer(..., ssl_context=ctx) (the event loop's TLS; uvloop when"
        " installed)",
        protocols=("tcp", "udp", "shutdown", "tls"),
    ),
    ServerSpec(
        name="sockserve-pool-proxy",
        family="sockserve",
        tcp="sockserve.ThreadPoolTCPServer(proxy_protocol='v2'), each connection opened by a "
        "PROXY v2 header from the load generator (sockserve-pool with the header's cost)",
        protocols=("tcp",),
        skips=_PROXY_SKIPS,
        proxy_header="v2",
    ),
    ServerSpec(
        name="sockserve-async-proxy",
        family="sockserve",
        tcp="sockserve.AsyncTCPServer(proxy_protocol='v2'), each connection opened by a "
        "PROXY v2 header from the load generator (sockserve-async with the header's cost)",
        protocols=("tcp",),
        skips=_PROXY_SKIPS,
        proxy_header="v2",
    ),
    ServerSpec(
        name="sockserve-pool-metrics",
        family="sockserve",
        tcp="sockserve.ThreadPoolTCPServer registered with sockserve.observability.metrics "
        "(sockserve-pool plus the per-connection histograms; needs prometheus-client)",
        protocols=("tcp",),
        skips=_METRICS_SKIPS,
        metrics=True,
    ),
    ServerSpec(
        name="sockserve-async-metrics",
        family="sockserve",
        tcp="sockserve.AsyncTCPServer registered with sockserve.observability.metrics "
        "(sockserve-async plus the per-connection histograms; needs prometheus-client)",
        protocols=("tcp",),
        skips=_METRICS_SKIPS,
        metrics=True,
    ),
    ServerSpec(
        name="sockserve-run-1",
        family="sockserve",
        tcp="python -m sockserve run HANDLER --workers 1 (runner defaults otherwise)",
        http="python -m sockserve run HTTP_HANDLER --workers 1 (runner defaults otherwise)",
        protocols=("tcp", "http"),
    ),
    ServerSpec(
        name="sockserve-run-2",
        family="sockserve",
        tcp="python -m sockserve run HANDLER --workers 2 (runner defaults otherwise)",
        http="python -m sockserve run HTTP_HANDLER --workers 2 (runner defaults otherwise)",
        tls="python -m sockserve run HANDLER --workers 2 --certfile CERT --keyfile KEY",
        protocols=("tcp", "http", "tls"),
    ),
    ServerSpec(
        name="sockserve-run-async-1",
        family="sockserve",
        tcp="python -m sockserve run ASYNC_HANDLER --worker-class async --workers 1 "
        "(runner defaults otherwise)",
        protocols=("tcp",),
    ),
    ServerSpec(
        name="sockserve-run-async-2",
        family="sockserve",
        tcp="python -m sockserve run ASYNC_HANDLER --worker-class async --workers 2 "
        "(runner defaults otherwise)",
        protocols=("tcp",),
    ),
    ServerSpec(
        name="sockserve-sync",
        family="sockserve",
        tcp="",
        udp="sockserve.UDPServer (one datagram at a time, no threads)",
        protocols=("udp",),
    ),
    ServerSpec(
        name="stdlib-threading-backlog5",
        family="stdlib",
        tcp="socketserver.ThreadingTCPServer, default listen backlog (5)",
        http="http.server.ThreadingHTTPServer (backlog 5)",
        protocols=("tcp", "http"),
    ),
    ServerSpec(
        name=BASELINE,
        family="stdlib",
        tcp="socketserver.ThreadingTCPServer, request_queue_size=socket.SOMAXCONN",
        udp="socketserver.ThreadingUDPServer",
        http="http.server.ThreadingHTTPServer, request_queue_size=socket.SOMAXCONN",
        tls="the same, listening socket wrapped: server.socket = ctx.wrap_socket(server.socket,"
        " server_side=True) (the handshake runs in accept())",
        protocols=("tcp", "udp", "http", "shutdown", "tls"),
    ),
    ServerSpec(
        name="stdlib-sync",
        family="stdlib",
        tcp="",
        udp="socketserver.UDPServer (one datagram at a time, no threads)",
        protocols=("udp",),
    ),
    ServerSpec(
        name="asyncio-streams",
        family="asyncio",
        tcp="asyncio.start_server, StreamReader.read / StreamWriter.write + drain",
        tls="asyncio.start_server(..., ssl=ctx)",
        protocols=("tcp", "tls"),
    ),
    ServerSpec(
        name="asyncio-protocol",
        family="asyncio",
        tcp="asyncio loop.create_server, Protocol.data_received -> transport.write",
        udp="asyncio loop.create_datagram_endpoint, DatagramProtocol -> sendto",
        tls="loop.create_server(..., ssl=ctx)",
        protocols=("tcp", "udp", "tls"),
    ),
    ServerSpec(
        name="uvloop-streams",
        family="uvloop",
        tcp="uvloop + asyncio.start_server streams",
        tls="uvloop + asyncio.start_server(..., ssl=ctx)",
        protocols=("tcp", "tls"),
    ),
    ServerSpec(
        name="uvloop-protocol",
        family="uvloop",
        tcp="uvloop + asyncio Protocol",
        udp="uvloop + asyncio DatagramProtocol",
        tls="uvloop + loop.create_server(..., ssl=ctx)",
        protocols=("tcp", "udp", "tls"),
    ),
    ServerSpec(
        name="gevent",
        family="gevent",
        tcp="gevent.server.StreamServer, recv/sendall loop",
        udp="gevent.server.DatagramServer",
        tls="gevent.server.StreamServer(..., ssl_context=ctx)",
        protocols=("tcp", "udp", "tls"),
    ),
)

#: The servers a quick (smoke) run uses: only what the stdlib and sockserve provide.
QUICK_SERVERS = ("sockserve-threading", BASELINE, "asyncio-protocol")

BY_NAME = {spec.name: spec for spec in SERVERS}

#: ``KIND@LABEL`` names a sockserve kind served by another revision of the
#: library (see :mod:`benchmarks.revisions`).
REVISION_MARK = "@"


def split_name(name: str) -> tuple[str, str | None]:
    """(catalog kind, revision label or None) of a server name."""
    kind, mark, label = name.partition(REVISION_MARK)
    return kind, (label if mark else None)


def at_revision(spec: ServerSpec, label: str) -> ServerSpec:
    """``spec`` with sockserve taken from revision ``label``: same server code, other library."""
    suffix = f" [sockserve from {label}]"
    return replace(
        spec,
        name=f"{spec.name}{REVISION_MARK}{label}",
        tcp=spec.tcp and spec.tcp + suffix,
        udp=spec.udp and spec.udp + suffix,
        http=spec.http and spec.http + suffix,
        tls=spec.tls and spec.tls + suffix,
    )


def spec_for(name: str) -> ServerSpec:
    """The spec of any server name, a revision's (``sockserve-pool@abc1234``) included."""
    kind, label = split_name(name)
    spec = BY_NAME[kind]
    return spec if label is None else at_revision(spec, label)


def with_revisions(specs: list[ServerSpec], labels: list[str]) -> list[ServerSpec]:
    """``specs`` with, right after each sockserve kind, that kind at each revision in ``labels``.

    Each revision's run follows the working tree's in the same round, moments
    apart, as the pair a comparison divides.
    """
    result: list[ServerSpec] = []
    for spec in specs:
        result.append(spec)
        if spec.family == "sockserve":
            result.extend(at_revision(spec, label) for label in labels)
    return result


def select(names: list[str] | None) -> list[ServerSpec]:
    """The specs for ``names`` in catalog order (all of them for None).

    Unknown names are an error, so a typo in ``--only`` does not silently
    benchmark nothing.
    """
    if names is None:
        return list(SERVERS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        known = ", ".join(BY_NAME)
        raise ValueError(f"unknown server(s): {', '.join(unknown)} (known: {known})")
    wanted = set(names)
    if BASELINE not in wanted:
        # Ratios need the baseline measured in the same round.
        wanted.add(BASELINE)
    return [spec for spec in SERVERS if spec.name in wanted]
