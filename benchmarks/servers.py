"""One server under test, in its own process: ``python -m benchmarks.servers --kind K``.

Why a process per server: each framework gets a clean interpreter (gevent,
uvloop and two socketserver implementations never share one), its CPU time and
memory can be read from /proc without the harness's own, and a server that
wedges is simply killed.

Protocol with the harness: the process binds 127.0.0.1 port 0, prints one JSON
line ``{"port": N, "pid": P, "backlog": B}`` on stdout once it accepts
connections, and exits on SIGTERM. ``--probe`` prints instead which kinds and
protocols are available here, and the versions of what they use.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.util
import json
import os
import resource
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from types import FrameType, ModuleType
from typing import Any, cast

from benchmarks.catalog import BY_NAME, SERVERS
from benchmarks.handlers import (
    RECV_SIZE,
    datagram_echo_handler_class,
    echo_handler_class,
    http_handler_class,
)
from benchmarks.tlscerts import CERT_ENV, KEY_ENV

HOST = "127.0.0.1"
#: asyncio's (and uvloop's) documented default listen backlog.
ASYNCIO_BACKLOG = 100
#: How long the prefork runner gets to answer its first request.
RUNNER_START_TIMEOUT_S = 20.0


#: What importing a package that is missing or half-written may raise.
IMPORT_FAILURES = (ImportError, SyntaxError, AttributeError, NameError, TypeError, ValueError)


class Unavailable(Exception):
    """This kind cannot run this protocol here; the message says why."""


# -- process plumbing ----------------------------------------------------------


def sockserve_origin() -> str | None:
    """The file sockserve is (or would be) imported from in this process, if any.

    The harness checks it when it compares revisions of sockserve: a server
    meant to run another revision must not have picked up this tree's.
    """
    module = sys.modules.get("sockserve")
    if module is not None:
        return getattr(module, "__file__", None)
    try:
        spec = importlib.util.find_spec("sockserve")
    except IMPORT_FAILURES:
        return None
    return spec.origin if spec is not None else None


def announce(port: int, backlog: int | None, **extra: Any) -> None:
    """Tell the harness we are listening (it reads exactly one line)."""
    line = {"port": port, "pid": os.getpid(), "backlog": backlog, **extra}
    line.setdefault("sockserve", sockserve_origin())
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _exit_now(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the process at once: a benchmark server has nothing to save,
    and a stdlib server would otherwise wait for every handler thread."""
    os._exit(0)


#: Descriptors a server process asks for: the 10,000-connection cell, twice
#: over (sockserve's async strategy holds two per connection), and room.
FD_WANTED = 32768


def raise_fd_limit(want: int = FD_WANTED) -> None:
    """Thousands of connections need thousands of descriptors.

    The soft limit goes up to the hard one; the hard one too where the
    process may raise it (root), as an administrator would for such a server.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            pass  # not allowed: the hard limit it is
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    """A port nobody listens on right now, for a server that will not take port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def tls_context(cls: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    """The server side of the TLS workloads, built from the files the harness generated.

    The certificate chain and key come from the environment (``CERT_ENV``,
    ``KEY_ENV``: see :mod:`benchmarks.tlscerts`); everything else is the ssl
    module's server default (TLS 1.2 and 1.3, its cipher list, two session
    tickets), which is what a user's server gets. Every TLS kind, sockserve's
    own when they come, takes its context from here; ``cls`` is for frameworks
    with a context class of their own (gevent's cooperative one).
    """
    cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    if not cert or not key:
        raise Unavailable(f"no certificate: the harness sets {CERT_ENV} and {KEY_ENV}")
    context = cls(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


# -- socketserver API: sockserve and the stdlib ------------------------------------

#: (kind, protocol) -> the class name in the socketserver-style module.
_SOCKETSERVER_CLASSES: dict[tuple[str, str], str] = {
    ("sockserve-threading", "tcp"): "ThreadingTCPServer",
    ("sockserve-threading", "udp"): "ThreadingUDPServer",
    ("sockserve-threading", "http"): "ThreadingTCPServer",
    ("sockserve-pool", "tcp"): "ThreadPoolTCPServer",
    ("sockserve-pool", "udp"): "ThreadPoolUDPServer",
    ("sockserve-pool", "http"): "ThreadPoolTCPServer",
    ("sockserve-forking", "tcp"): "ForkingTCPServer",
    ("sockserve-async", "tcp"): "AsyncTCPServer",
    ("sockserve-async", "udp"): "AsyncUDPServer",
    ("sockserve-pool-proxy", "tcp"): "ThreadPoolTCPServer",
    ("sockserve-async-proxy", "tcp"): "AsyncTCPServer",
    ("sockserve-pool-metrics", "tcp"): "ThreadPoolTCPServer",
    ("sockserve-async-metrics", "tcp"): "AsyncTCPServer",
    ("sockserve-sync", "udp"): "UDPServer",
    ("stdlib-threading-backlog5", "tcp"): "ThreadingTCPServer",
    ("stdlib-threading-somaxconn", "tcp"): "ThreadingTCPServer",
    ("stdlib-threading-somaxconn", "udp"): "ThreadingUDPServer",
    ("stdlib-sync", "udp"): "UDPServer",
}


#: Protocols served by a kind's TCP class and handler.
_STREAM = {"shutdown": "tcp", "tls": "tcp"}


def _wrap_listener(server: Any, context: ssl.SSLContext) -> None:
    """TLS the way stdlib users add it: wrap the listening socket.

    accept() then returns TLS sockets and runs each handshake itself, in the
    serving loop's thread, before the server sees the connection.
    """
    server.socket = context.wrap_socket(server.socket, server_side=True)


#: How the stdlib's kinds serve TLS: a function given the built server and the context.
_TLS_SETUP: dict[str, Callable[[Any, ssl.SSLContext], None]] = {
    "stdlib-threading-somaxconn": _wrap_listener,
}

#: sockserve's TLS kinds: the same server as for TCP, given the context the way
#: sockserve's API takes it, ``ssl_context=`` at construction.
_TLS_KEYWORD = frozenset({"sockserve-pool", "sockserve-async"})


def _sockserve_tls_missing() -> str | None:
    """Why the sockserve being imported cannot serve TLS (None: it can).

    Revisions before TLS either lack the ``ssl_context`` option or declare it
    without a handshake behind it (they would serve the load generator plain
    bytes); ``sockserve.security.tls`` is where the handshake lives.
    """
    try:
        found = importlib.util.find_spec("sockserve.security.tls")
    except IMPORT_FAILURES:
        found = None
    return None if found is not None else "this sockserve has no TLS (sockserve.security.tls)"


def _tls_unavailable(kind: str) -> str | None:
    """Why ``kind`` cannot serve the TLS workloads here (None: it can)."""
    if kind in _TLS_KEYWORD:
        return _sockserve_tls_missing()
    if kind not in _TLS_SETUP:
        return f"{kind} has no TLS setup in the suite"
    return None


def _socketserver_module(kind: str) -> ModuleType:
    if not kind.startswith("sockserve"):
        return importlib.import_module("socketserver")
    try:
        return importlib.import_module("sockserve")
    except IMPORT_FAILURES as exc:
        raise Unavailable(f"sockserve does not import: {exc!r}") from exc


def _server_class(kind: str, proto: str) -> type[Any]:
    """The server class for (kind, proto), adjusted the way a user would adjust it."""
    if proto == "http" and kind.startswith("stdlib"):
        if kind == "stdlib-threading-somaxconn":
            return type(
                "SomaxconnThreadingHTTPServer",
                (ThreadingHTTPServer,),
                {"request_queue_size": socket.SOMAXCONN},
            )
        return ThreadingHTTPServer
    name = _SOCKETSERVER_CLASSES.get((kind, _STREAM.get(proto, proto)))
    if name is None:
        raise Unavailable(f"{kind} has no {proto} server")
    module = _socketserver_module(kind)
    cls: type[Any] | None = getattr(module, name, None)
    if cls is None:
        raise Unavailable(f"{module.__name__}.{name} does not exist in this version")
    if kind == "stdlib-threading-somaxconn" and proto != "udp":
        return type(f"Somaxconn{name}", (cls,), {"request_queue_size": socket.SOMAXCONN})
    return cls


def _handler_class(kind: str, proto: str) -> type[Any]:
    if proto == "http":
        return http_handler_class()
    if kind.startswith("sockserve"):
        try:
            handlers = importlib.import_module("benchmarks.sockserve_handlers")
        except IMPORT_FAILURES as exc:
            raise Unavailable(f"sockserve does not import: {exc!r}") from exc
        if kind.startswith("sockserve-async"):
            name = "AsyncDatagramEchoHandler" if proto == "udp" else "AsyncEchoHandler"
            async_handler: type[Any] | None = getattr(handlers, name, None)
            if async_handler is None:
                raise Unavailable(f"this sockserve has no handler base for {name}")
            return async_handler
        handler: type[Any] = (
            handlers.DatagramEchoHandler if proto == "udp" else handlers.EchoHandler
        )
        return handler
    if proto == "udp":
        return datagram_echo_handler_class(socketserver.BaseRequestHandler)
    return echo_handler_class(socketserver.BaseRequestHandler)


def make_socketserver(kind: str, proto: str, **options: Any) -> Any:
    """A bound, listening (not yet serving) socketserver-API server on 127.0.0.1:0.

    Used here and by :mod:`benchmarks.shutdown`, which drives the same
    servers in-process. ``options`` go to the constructor (``ssl_context``).
    """
    cls = _server_class(kind, proto)
    handler = _handler_class(kind, _STREAM.get(proto, proto))
    spec = BY_NAME.get(kind)
    if spec is not None and spec.proxy_header:
        options = {**options, "proxy_protocol": spec.proxy_header}
    try:
        return cls((HOST, 0), handler, **options)
    except TypeError as exc:
        raise Unavailable(f"{cls.__name__} needs arguments the suite does not know: {exc}") from exc


def serve_socketserver(kind: str, proto: str) -> None:
    """Run a socketserver-API server until SIGTERM."""
    setup = _TLS_SETUP.get(kind) if proto == "tls" else None
    options: dict[str, Any] = {}
    if proto == "tls":
        reason = _tls_unavailable(kind)
        if reason is not None:
            raise Unavailable(reason)
        if kind in _TLS_KEYWORD:
            options["ssl_context"] = tls_context()
    server = make_socketserver(kind, proto, **options)
    if setup is not None:
        setup(server, tls_context())
    spec = BY_NAME.get(kind)
    if spec is not None and spec.metrics:
        _register_metrics(server)
    backlog = getattr(server, "request_queue_size", None) if proto != "udp" else None
    announce(server.server_address[1], backlog)
    server.serve_forever()


def _register_metrics(server: Any) -> None:
    """Expose ``server`` through a registry of its own, as a program using the extra would."""
    try:
        from prometheus_client import CollectorRegistry  # noqa: PLC0415

        from sockserve.observability.metrics import register  # noqa: PLC0415
    except IMPORT_FAILURES as exc:
        raise Unavailable(f"no metrics here (pip install 'sockserve[metrics]'): {exc!r}") from exc
    register(server, registry=CollectorRegistry())


# -- sockserve's prefork runner ------------------------------------------------------


@functools.cache
def _runner_help() -> tuple[str | None, str]:
    """(why ``python -m sockserve run`` is unavailable or None, its --help text)."""
    try:
        if importlib.util.find_spec("sockserve") is None:
            return "sockserve is not installed", ""
        if importlib.util.find_spec("sockserve.__main__") is None:
            return "sockserve has no command line (python -m sockserve) in this version", ""
    except IMPORT_FAILURES as exc:
        return f"sockserve does not import: {exc!r}", ""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sockserve", "run", "--help"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "python -m sockserve run --help did not answer within 30 s", ""
    if done.returncode != 0:
        return "python -m sockserve has no 'run' command in this version", ""
    return None, done.stdout.decode(errors="replace")


def runner_available(worker_class: str = "pool", proto: str = "tcp") -> str | None:
    """None if ``python -m sockserve run`` exists (with ``worker_class``, and TLS for
    ``proto="tls"``), else why not."""
    reason, text = _runner_help()
    if reason is None and worker_class != "pool" and worker_class not in text:
        return f"sockserve run has no --worker-class {worker_class} in this version"
    if reason is None and proto == "tls" and "--certfile" not in text:
        return "sockserve run has no --certfile (TLS) in this version"
    return reason


def runner_kind(kind: str) -> tuple[str, int]:
    """(worker class, workers) of a ``sockserve-run-[CLASS-]N`` kind."""
    middle, workers = kind.removeprefix("sockserve-run-").rpartition("-")[::2]
    return middle or "pool", int(workers)


def _wait_until_serving(port: int, proto: str) -> None:
    """One request through the runner: returns once a worker has answered it.

    The listening socket exists before the runner starts, so connect() alone
    proves nothing; an answer does. Blocking with a timeout, no polling. Over
    TLS the probe does not verify the certificate: it only asks for an answer.
    """
    probe = (
        b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        if proto == "http"
        else b"ping"
    )
    with socket.create_connection((HOST, port), timeout=RUNNER_START_TIMEOUT_S) as raw:
        client: socket.socket = raw
        if proto == "tls":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client = context.wrap_socket(raw)
        with client:
            client.sendall(probe)
            if not client.recv(len(probe)):
                raise SystemExit("sockserve run closed the readiness connection without answering")


def serve_prefork(workers: int, proto: str, worker_class: str = "pool") -> None:
    """Run ``python -m sockserve run`` with its default settings on a socket we bound.

    The listener is bound here (127.0.0.1, port 0) and handed over as
    ``--bind fd://N``: the port is known without parsing the runner's log,
    and there is no window in which another process could take it.
    """
    reason = runner_available(worker_class, proto)
    if reason:
        raise Unavailable(reason)
    targets = {
        ("pool", "tcp"): "benchmarks.sockserve_handlers:EchoHandler",
        ("pool", "http"): "benchmarks.sockserve_handlers:HTTPHandler",
        ("pool", "tls"): "benchmarks.sockserve_handlers:EchoHandler",
        ("async", "tcp"): "benchmarks.sockserve_handlers:AsyncEchoHandler",
    }
    target = targets.get((worker_class, proto))
    if target is None:
        raise Unavailable(
            f"sockserve run --worker-class {worker_class} is not benchmarked for {proto}"
        )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(socket.SOMAXCONN)
    port = listener.getsockname()[1]
    command = [sys.executable, "-m", "sockserve", "run", target]
    command += ["--bind", f"fd://{listener.fileno()}", "--workers", str(workers)]
    if worker_class != "pool":
        command += ["--worker-class", worker_class]
    if proto == "tls":
        cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
        if not cert or not key:
            raise Unavailable(f"no certificate: the harness sets {CERT_ENV} and {KEY_ENV}")
        command += ["--certfile", cert, "--keyfile", key]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, pass_fds=(listener.fileno(),))
    listener.close()  # the runner has its own copy

    def forward(signum: int, frame: FrameType | None) -> None:
        # os.waitpid, not child.wait(): this handler may interrupt child.wait()
        # below, which holds the Popen's lock, and a second wait would only
        # time out. The harness SIGKILLs the group if the runner hangs.
        child.send_signal(signal.SIGTERM)
        try:
            os.waitpid(child.pid, 0)
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, forward)
    _wait_until_serving(port, proto)
    announce(port, socket.SOMAXCONN, workers=workers, worker_class=worker_class)
    child.wait()


# -- asyncio and uvloop --------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    """The Protocol way: write back whatever arrives, from the callback."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class DatagramEchoProtocol(asyncio.DatagramProtocol):
    """Each datagram goes back to its sender."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(data, addr)


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The streams way: read, write, drain, until EOF."""
    try:
        while data := await reader.read(RECV_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve_asyncio(style: str, proto: str) -> None:
    loop = asyncio.get_running_loop()
    if proto == "udp":
        if style != "protocol":
            raise Unavailable("asyncio streams have no datagram API")
        transport, _ = await loop.create_datagram_endpoint(
            DatagramEchoProtocol, local_addr=(HOST, 0)
        )
        announce(transport.get_extra_info("sockname")[1], None)
        await loop.create_future()  # until SIGTERM
        return
    if proto not in ("tcp", "tls"):
        raise Unavailable(f"no {proto} server for asyncio")
    context = tls_context() if proto == "tls" else None
    if style == "streams":
        server = await asyncio.start_server(_echo_stream, HOST, 0, ssl=context)
    else:
        server = await loop.create_server(EchoProtocol, HOST, 0, ssl=context)
    announce(server.sockets[0].getsockname()[1], ASYNCIO_BACKLOG)
    await server.serve_forever()


def serve_asyncio(style: str, proto: str, use_uvloop: bool) -> None:
    """Run an asyncio server, on uvloop's loop if asked."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError as exc:
            raise Unavailable("uvloop is not installed (pip install -e '.[bench]')") from exc
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve_asyncio(style, proto))


# -- gevent --------------------------------------------------------------------------


def serve_gevent(proto: str) -> None:
    """gevent's own servers, without monkey-patching (they need none)."""
    try:
        gevent = importlib.import_module("gevent")
        gserver = importlib.import_module("gevent.server")
        gssl = importlib.import_module("gevent.ssl")
    except ImportError as exc:
        raise Unavailable("gevent is not installed (pip install -e '.[bench]')") from exc

    def echo(sock: Any, address: Any) -> None:
        while True:
            data = sock.recv(RECV_SIZE)
            if not data:
                return
            sock.sendall(data)

    class DatagramEcho(gserver.DatagramServer):  # type: ignore[misc,name-defined]
        def handle(self, data: bytes, address: Any) -> None:
            self.socket.sendto(data, address)

    gevent.signal_handler(signal.SIGTERM, os._exit, 0)
    if proto == "udp":
        server = DatagramEcho((HOST, 0))
        server.start()
        announce(server.server_port, None)
    elif proto in ("tcp", "tls"):
        # gevent turns TLS on by the keyword's presence: pass it only for TLS. The
        # context must be gevent's: the stdlib's would block the hub in each
        # handshake (without monkey-patching, which the suite does not do).
        tls = {"ssl_context": tls_context(gssl.SSLContext)} if proto == "tls" else {}
        server = gserver.StreamServer((HOST, 0), echo, **tls)
        server.start()
        announce(server.server_port, getattr(server, "backlog", None))
    else:
        raise Unavailable(f"no {proto} server for gevent")
    server.serve_forever()


# -- dispatch and probe ------------------------------------------------------------


def serve(kind: str, proto: str) -> None:
    """Run ``kind`` for ``proto`` until SIGTERM."""
    if kind.startswith("sockserve-run-"):
        worker_class, workers = runner_kind(kind)
        serve_prefork(workers, proto, worker_class)
    elif kind.startswith(("sockserve-", "stdlib-")):
        serve_socketserver(kind, proto)
    elif kind.startswith(("asyncio-", "uvloop-")):
        family, style = kind.split("-", 1)
        serve_asyncio(style, proto, use_uvloop=family == "uvloop")
    elif kind == "gevent":
        serve_gevent(proto)
    else:
        raise SystemExit(f"unknown kind {kind!r}")


def _probe_one(kind: str, proto: str, runner_reason: str | None) -> str | None:
    """None when ``kind`` can serve ``proto`` here, else why not (without serving)."""
    try:
        if kind.startswith("sockserve-run-"):
            worker_class = runner_kind(kind)[0]
            if runner_reason:
                return runner_reason
            if worker_class == "pool":
                return runner_available("pool", proto) if proto == "tls" else None
            if worker_class == "async":
                _handler_class("sockserve-async", "tcp")  # the handler it would serve
            return runner_available(worker_class)
        if kind.startswith(("sockserve-", "stdlib-")):
            _server_class(kind, proto)
            return _tls_unavailable(kind) if proto == "tls" else None
        family = kind.split("-", 1)[0]
        if family in ("uvloop", "gevent") and importlib.util.find_spec(family) is None:
            return f"{family} is not installed (pip install -e '.[bench]')"
    except Unavailable as exc:
        return str(exc)
    return None


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except IMPORT_FAILURES:
        return None
    return str(getattr(mod, "__version__", "?"))


def probe() -> dict[str, Any]:
    """Availability of every (kind, protocol) pair, and the versions in use."""
    runner_reason = runner_available()
    kinds = {
        spec.name: {proto: _probe_one(spec.name, proto, runner_reason) for proto in spec.protocols}
        for spec in SERVERS
    }
    versions = {name: _version(name) for name in ("sockserve", "uvloop", "gevent")}
    versions["ssl"] = ssl.OPENSSL_VERSION  # what the Python servers' TLS runs on
    sockserve_path = None
    spec = importlib.util.find_spec("sockserve")
    if spec is not None and spec.origin:
        sockserve_path = os.path.dirname(spec.origin)
    return {"kinds": kinds, "versions": versions, "sockserve_path": sockserve_path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", help="server kind (see benchmarks.catalog)")
    parser.add_argument("--proto", default="tcp", choices=("tcp", "udp", "http", "tls"))
    parser.add_argument("--probe", action="store_true", help="print availability as JSON")
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    if not args.kind:
        parser.error("--kind is required")
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _exit_now)
    try:
        serve(args.kind, args.proto)
    except Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
