"""The master's metrics: its own counters, the workers' slots, and ``/metrics`` + ``/healthz``.

``--metrics-bind HOST:PORT`` opens one more listening socket in the master,
served by the master's own ``select`` loop: no thread, because the master
forks (a thread holding a lock at a fork leaves the child a lock nobody will
release). Each request is small, non-blocking and bounded (headers up to
8 KiB, 5 seconds, 16 clients at once), so a scraper cannot stall
supervision. Workers' numbers come from their shared-memory slots
(:mod:`sockserve.runner.slots`, which says why that aggregation).

``/healthz`` answers 200 while the run serves and 503 otherwise: while
booting, during ``--shutdown-delay`` (still accepting, so load balancers and
Kubernetes endpoints stop sending first) and during the drain.

prometheus-client is imported only when ``--metrics-bind`` is given; the
master's counters (restarts, reloads, boot failures) are plain integers,
kept whether or not anyone exposes them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from sockserve import __version__
from sockserve.core.addresses import parse_bind_spec
from sockserve.observability.logs import describe_address
from sockserve.observability.recorder import Histogram
from sockserve.runner.listeners import Listener
from sockserve.runner.slots import ListenerTotals, Slot

__all__ = ["MasterMetrics"]

log = logging.getLogger("sockserve.master")

#: Limits of the HTTP side: header bytes, seconds per request, clients at once.
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
MAX_CLIENTS = 16


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    received: bytes = b""
    reply: bytes = b""
    sent: int = 0


@dataclass
class MasterMetrics:
    """What the master counts, and (with ``--metrics-bind``) the endpoint and the slots."""

    listeners: list[Listener]
    worker_class: str
    restarts: Counter[str] = field(default_factory=Counter)
    reloads: Counter[str] = field(default_factory=Counter)
    boot_failures: int = 0
    _server: socket.socket | None = None
    _clients: dict[int, _Client] = field(default_factory=dict)
    _slots: dict[int, Slot] = field(default_factory=dict)
    _totals: list[ListenerTotals] = field(default_factory=list)
    _render: Callable[[MasterMetrics, int, bool], bytes] | None = None

    # -- life ------------------------------------------------------------------

    def open(self, address: str) -> str:
        """Listen on ``address`` (HOST:PORT); return the bound address (port 0 picks one)."""
        from sockserve.runner.exposition import render  # noqa: PLC0415  (prometheus-client)

        spec = parse_bind_spec(address)
        host, port = cast(tuple[str, int], spec.address)[:2]
        sock = socket.create_server((host, port), family=spec.family, backlog=64)
        sock.setblocking(False)
        self._server = sock
        self._render = render
        self._totals = [ListenerTotals() for _ in self.listeners]
        return describe_address(sock.getsockname())

    @property
    def enabled(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        if self._server is not None:
            self._server.close()
        for slot in self._slots.values():
            slot.close()
        self._slots.clear()

    # -- workers' slots --------------------------------------------------------------

    def new_slot(self) -> Slot | None:
        """A slot for the worker about to be forked (None without --metrics-bind)."""
        return Slot(len(self.listeners)) if self.enabled else None

    def worker_started(self, pid: int, slot: Slot | None) -> None:
        if slot is not None:
            self._slots[pid] = slot

    def in_child(self, keep: Slot | None) -> None:
        """In a freshly forked worker: let go of the master's sockets and other slots."""
        for client in self._clients.values():
            client.sock.close()
        self._clients.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        for slot in self._slots.values():
            if slot is not keep:
                slot.close()
        self._slots.clear()

    def worker_gone(self, pid: int) -> None:
        """A reaped worker: keep its counters and histograms, drop its gauges and slot."""
        slot = self._slots.pop(pid, None)
        if slot is None:
            return
        for index, totals in enumerate(self._totals):
            totals.retire(*slot.read(index))
        slot.close()

    def listener_numbers(self) -> list[tuple[str, list[float], dict[str, Histogram]]]:
        """(listener label, summed fields, merged histograms) for each listener."""
        result: list[tuple[str, list[float], dict[str, Histogram]]] = []
        for index, (listener, totals) in enumerate(zip(self.listeners, self._totals, strict=True)):
            values, histograms = totals.total([slot.read(index) for slot in self._slots.values()])
            result.append((str(listener.spec), values, dict(histograms)))
        return result

    def build_info(self) -> list[tuple[str, str, str]]:
        """``sockserve_build_info`` labels: what the live workers said they are."""
        seen = {slot.describe() for slot in self._slots.values()}
        triples = [(__version__, *described) for described in seen if described is not None]
        return triples or [(__version__, self.worker_class, "none")]

    # -- HTTP ------------------------------------------------------------------------

    def readers(self) -> list[int]:
        if self._server is None:
            return []
        fds = [fd for fd, client in self._clients.items() if not client.reply]
        return [self._server.fileno(), *fds]

    def writers(self) -> list[int]:
        return [fd for fd, client in self._clients.items() if client.reply]

    def owns(self, fd: int) -> bool:
        return self._server is not None and (fd == self._server.fileno() or fd in self._clients)

    def readable(self, fd: int, workers_alive: int, healthy: bool) -> None:
        if self._server is not None and fd == self._server.fileno():
            self._accept()
            return
        client = self._clients.get(fd)
        if client is None:
            return
        try:
            data = client.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.received += data
        if b"\r\n\r\n" in client.received or b"\n\n" in client.received:
            client.reply = self._answer(client.received, workers_alive, healthy)
            self.writable(fd)
        elif len(client.received) >= MAX_REQUEST:
            client.reply = _response(431, "text/plain", b"request header too large\n")
            self.writable(fd)

    def writable(self, fd: int) -> None:
        client = self._clients.get(fd)
        if client is None:
            return
        try:
            client.sent += client.sock.send(client.reply[client.sent :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            client.sent = len(client.reply)
        if client.sent >= len(client.reply):
            self._drop(client)

    def expire(self, now: float) -> None:
        for client in [c for c in self._clients.values() if now >= c.deadline]:
            self._drop(client)

    def _accept(self) -> None:
        assert self._server is not None
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("metrics: accept failed: %s", exc)
                return
            if len(self._clients) >= MAX_CLIENTS:
                oldest = min(self._clients.values(), key=lambda c: c.deadline)
                self._drop(oldest)
            sock.setblocking(False)
            self._clients[sock.fileno()] = _Client(sock, time.monotonic() + REQUEST_TIMEOUT)

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(OSError):
            client.sock.close()

    def _answer(self, request: bytes, workers_alive: int, healthy: bool) -> bytes:
        line = request.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return _response(405, "text/plain", b"only GET /metrics and GET /healthz\n")
        path = parts[1].split("?", 1)[0]
        if path == "/healthz":
            body = b"ok\n" if healthy else b"unavailable\n"
            reply = _response(200 if healthy else 503, "text/plain", body)
        elif path == "/metrics" and self._render is not None:
            body = self._render(self, workers_alive, healthy)
            reply = _response(200, "text/plain; version=0.0.4; charset=utf-8", body)
        else:
            reply = _response(404, "text/plain", b"not found: try /metrics or /healthz\n")
        if parts[0] == "HEAD":
            return reply.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        return reply


_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _response(status: int, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
