"""What a connection goes through before its handler when the server asks for it.

PROXY protocol headers (:mod:`.proxy`), access control on the real client
(:mod:`.access`) and TLS handshakes (:mod:`.tls`), each a pre-handler step
(:mod:`sockserve.engine.prepare`) with its own timeout; :func:`steps_for`
puts them in their order.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING, cast

from sockserve._types import Address
from sockserve.engine.connection import Connection
from sockserve.engine.prepare import Step
from sockserve.protocols.proxy import Mode
from sockserve.security.access import AccessRules, AccessStep
from sockserve.security.proxy import ProxyHeaderStep, TrustedProxies
from sockserve.security.tls import HandshakeStep, record_server_names

if TYPE_CHECKING:
    from sockserve.servers import BaseServer

__all__ = ["steps_for", "tls_context_of"]


def steps_for(server: BaseServer) -> list[Step]:
    """The pre-handler steps ``server``'s options ask for, in the order they must run.

    The PROXY header first (it is the first thing on the wire, and it tells
    who the client is), then access control on that client, then the TLS
    handshake (no crypto is spent on a client that will be refused).
    """
    steps: list[Step] = []
    unix = getattr(server, "address_family", None) == socket.AF_UNIX
    stream = getattr(server, "socket_type", socket.SOCK_STREAM) == socket.SOCK_STREAM
    if server.proxy_protocol != "off" and stream:
        steps.append(_proxy_step(server, unix=unix))
    rules = AccessRules.parse(server.allow, server.deny)
    if rules.restricts:
        steps.append(AccessStep(rules, unix=unix))
    if stream and tls_context_of(server) is not None:
        steps.append(
            HandshakeStep(
                lambda: tls_context_of(server),
                timeout=server.handshake_timeout,
                idle_timeout=lambda: server.idle_timeout,
                # Looked up late: the steps are made while the pipeline is being built.
                replace=lambda conn, sock: server._pipeline.replace_request(conn, sock),  # noqa: PLW0108
            )
        )
    return steps


def tls_context_of(server: BaseServer) -> ssl.SSLContext | None:
    """The context new connections are served with: ``ssl_context``, or the listener's own.

    The second is the classic recipe ``server.socket =
    ctx.wrap_socket(server.socket, server_side=True)``: sockserve accepts the
    raw connection and handshakes in the pre-handler stage with that context,
    instead of inside ``accept()`` on the serving thread. The context learns
    to record SNI names (:func:`~sockserve.security.tls.record_server_names`).
    """
    context = server.ssl_context
    if context is None:
        listener = server._listening_socket()
        if isinstance(listener, ssl.SSLSocket):
            context = listener.context
    return record_server_names(context) if context is not None else None


def _proxy_step(server: BaseServer, *, unix: bool) -> ProxyHeaderStep:
    def readdress(conn: Connection, address: Address) -> str | None:
        # Looked up per call: the steps are made while the server's pipeline
        # (and its tracker) is being built.
        return server._pipeline.tracker.readdress(conn, address)

    return ProxyHeaderStep(
        cast(Mode, server.proxy_protocol),
        TrustedProxies(server.proxy_trusted, unix=unix),
        refuse_untrusted=server.proxy_untrusted == "refuse",
        timeout=server.proxy_header_timeout,
        readdress=readdress,
        socket_of=server._raw_socket,
    )
