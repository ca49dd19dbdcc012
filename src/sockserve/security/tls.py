"""TLS: contexts with safe defaults, the handshake as a pre-handler step, what a handler can see.

The handshake never runs on the accept loop and never holds a worker while
the peer is silent: it is a pre-handler step (:class:`HandshakeStep`), a
non-blocking ``do_handshake()`` driven by readiness on the preparer's thread
(thread and pool strategies), or where the connection is served (the inline
server's loop, a forked child), bounded by ``handshake_timeout`` everywhere.
The async strategy lets its event loop do the handshake
(``connect_accepted_socket(ssl=...)``), under the same timeout.

Failures are the peer's, not the server's: each is mapped to one of a fixed
set of kinds (:func:`failure_kind`), counted in ``stats().step_failures`` as
``tls:KIND``, logged once per kind through the rate limiter, never a
traceback and never a handler error.

STARTTLS (a handler upgrading a plain connection mid-protocol) uses the same
handshake: :func:`upgrade` drives it on the handler's thread under one
deadline (``StreamRequestHandler.start_tls``); async handlers have the event
loop's (``Stream.start_tls``), whose failures :func:`loop_handshake_failure`
sorts the same way. Either raises :class:`TLSHandshakeError` (a
``PeerError``) or a ``TimeoutError``, counted like the step's.

What sockserve sets on a context you give it, and why:

* ``sni_callback``: to record the name the client asked for (Python exposes
  it nowhere else); your own callback, if the context has one, still runs
  (it is chained, and it may still switch contexts). Nothing else is changed:
  a context shared with other code keeps its settings.

:func:`server_context` makes a context for you, with these choices:

* TLS 1.2 at least (``tls_min_version``): older versions have known attacks
  (BEAST, POODLE-style downgrades) and no client needs them;
* the ``ssl`` module's defaults for ciphers (forward secrecy, AEAD first)
  unless ``ciphers`` says otherwise;
* no compression (CRIME), no renegotiation (``OP_NO_RENEGOTIATION``:
  renegotiation has been a denial-of-service and injection vector);
* client certificates only if ``cert_reqs`` asks (``optional`` or
  ``required``: mutual TLS, against ``ca_certs``).
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sockserve.engine.connection import Connection, StepFailed, StepTimedOut
from sockserve.engine.prepare import DONE, READ, WRITE, prepare_in_place

__all__ = [
    "CERT_REQS",
    "TLS_VERSIONS",
    "HandshakeStep",
    "TLSHandshakeError",
    "TLSInfo",
    "describe_failure",
    "failure_kind",
    "loop_handshake_failure",
    "record_server_names",
    "send_close_notify",
    "server_context",
    "upgrade",
]

#: ``tls_min_version`` words -> the ``ssl`` module's versions.
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
#: ``cert_reqs`` words -> the ``ssl`` module's verify modes.
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

#: The attribute an SSLSocket / SSLObject carries the client's SNI name in.
_SNI = "sockserve_server_name"

# SSLError.reason is free text from OpenSSL: these are the ones that tell a kind.
_NOT_TLS = frozenset(
    {
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LENGTH_MISMATCH",
        "BAD_RECORD_TYPE",
    }
)
_PROTOCOL = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "VERSION_TOO_LOW",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_INAPPROPRIATE_FALLBACK",
        "INAPPROPRIATE_FALLBACK",
    }
)
_CIPHER = frozenset(
    {
        "NO_SHARED_CIPHER",
        "NO_CIPHERS_AVAILABLE",
        "NO_SUITABLE_SIGNATURE_ALGORITHM",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "NO_SHARED_GROUPS",
        "NO_SUITABLE_KEY_SHARE",
    }
)
_CERTIFICATE = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "CERTIFICATE_REQUIRED",
    }
)
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class TLSHandshakeError(StepFailed):
    """The peer failed a TLS handshake (a :class:`~sockserve.errors.PeerError`).

    ``kind`` is ``tls:KIND`` (:func:`failure_kind`): what ``stats().step_failures``
    counts, whether the handshake was the pre-handler step or a STARTTLS upgrade.
    """

    @classmethod
    def of(cls, exc: BaseException) -> TLSHandshakeError:
        return cls(f"tls:{failure_kind(exc)}", describe_failure(exc))


def failure_kind(exc: BaseException) -> str:
    """The kind of a failed handshake: not-tls, protocol, no-shared-cipher, certificate,
    reset or other (timeouts are the driver's: ``tls:timeout``)."""
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionError):
        return "reset"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _NOT_TLS:
            return "not-tls"
        if reason in _PROTOCOL:
            return "protocol"
        if reason in _CIPHER:
            return "no-shared-cipher"
        if reason in _CERTIFICATE:
            return "certificate"
        if reason == "UNEXPECTED_EOF_WHILE_READING":
            return "reset"
        return "other"
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return "reset"
    return "other"


def loop_handshake_failure(exc: BaseException, timeout: float | None) -> Exception:
    """What an event loop's failed handshake is raised as: the peer's, sorted into its kind.

    asyncio and uvloop report their handshake timeout as a
    ``ConnectionAbortedError`` ("SSL handshake is taking longer than N
    seconds"): that is ``tls:timeout`` (a ``TimeoutError``), like the sync
    strategies' deadline; anything else is a :class:`TLSHandshakeError`.
    """
    if isinstance(exc, ConnectionAbortedError) and "longer than" in str(exc):
        return StepTimedOut("tls", "TLS handshake", timeout)
    return TLSHandshakeError.of(exc)


def server_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    password: str | None = None,
    ca_certs: str | None = None,
    cert_reqs: str = "none",
    ciphers: str | None = None,
    min_version: str = "1.2",
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A server-side context with the choices of the module doc.

    Raises ``ssl.SSLError``/``OSError`` for unreadable files or a key that does
    not match the certificate, and ``ValueError`` for a bad word.
    """
    if min_version not in TLS_VERSIONS:
        raise ValueError(f"min_version must be one of {sorted(TLS_VERSIONS)}, got {min_version!r}")
    if cert_reqs not in CERT_REQS:
        raise ValueError(f"cert_reqs must be one of {sorted(CERT_REQS)}, got {cert_reqs!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[min_version]
    context.options |= ssl.OP_NO_COMPRESSION
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    context.load_cert_chain(certfile, keyfile, password)
    context.verify_mode = CERT_REQS[cert_reqs]
    if ca_certs:
        context.load_verify_locations(ca_certs)
    elif cert_reqs != "none":
        raise ValueError(f"cert_reqs={cert_reqs!r} needs ca_certs to verify clients against")
    if ciphers:
        context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def record_server_names(context: ssl.SSLContext) -> ssl.SSLContext:
    """Make ``context`` remember the SNI name each client asks for (chains any own callback).

    Idempotent; returns the context.
    """
    previous = context.sni_callback
    if getattr(previous, "_sockserve_records_sni", False):
        return context

    def remember(ssl_object: Any, server_name: str | None, ctx: ssl.SSLContext) -> int | None:
        try:
            setattr(ssl_object, _SNI, server_name)
        except AttributeError:
            pass  # an object without a __dict__: the name is not recorded, nothing else changes
        if previous is None:
            return None
        # None when the client sent no name: the ssl module passes it on as is.
        return previous(ssl_object, cast(str, server_name), ctx)

    remember._sockserve_records_sni = True  # type: ignore[attr-defined]  # a marker, see above
    context.sni_callback = remember
    return context


@dataclass(frozen=True)
class TLSInfo:
    """The TLS session of a connection, for its handler (``server.connection_info(...).tls``)."""

    #: "TLSv1.3", "TLSv1.2".
    version: str | None
    #: (cipher name, protocol, secret bits), as ``SSLSocket.cipher()`` gives it.
    cipher: tuple[str, str, int] | None
    #: The ALPN protocol both sides chose ("h2", "http/1.1"...), if any.
    alpn: str | None
    #: The host name the client asked for (SNI), if it sent one.
    server_name: str | None
    #: The client's certificate, decoded, when one was asked for and verified.
    peer_certificate: dict[str, Any] | None
    #: The client's certificate in DER form, if it sent one.
    peer_certificate_der: bytes | None

    @classmethod
    def of(cls, ssl_object: ssl.SSLSocket | ssl.SSLObject) -> TLSInfo:
        cert = ssl_object.getpeercert() or None
        der = ssl_object.getpeercert(binary_form=True)
        return cls(
            version=ssl_object.version(),
            cipher=ssl_object.cipher(),
            alpn=ssl_object.selected_alpn_protocol(),
            server_name=getattr(ssl_object, _SNI, None),
            peer_certificate=cert,
            peer_certificate_der=der,
        )


class HandshakeStep:
    """The TLS handshake as a pre-handler step (see the module doc).

    On its first turn it wraps the connection's socket (the plain socket
    object is detached: ``replace`` re-points the connection's request to the
    ``SSLSocket``, which is what the handler then receives); then it drives a
    non-blocking ``do_handshake()``, waiting for whatever readiness OpenSSL
    asks for. Once done the socket is blocking again, with ``idle_timeout``
    as its Python-level timeout (the kernel's receive timeout, which sockserve
    uses for plain sockets, does not end a read that the ssl module retries).
    """

    name = "TLS handshake"
    kind = "tls"
    #: Crypto: never on the accept loop.
    cheap = False

    def __init__(
        self,
        context: Callable[[], ssl.SSLContext | None],
        *,
        timeout: float,
        idle_timeout: Callable[[], float | None],
        replace: Callable[[Connection, ssl.SSLSocket], None],
    ) -> None:
        self._context = context
        self.timeout: float | None = timeout
        self._idle_timeout = idle_timeout
        self._replace = replace

    def advance(self, conn: Connection) -> int:
        sock = conn.request
        if not isinstance(sock, ssl.SSLSocket):
            context = self._context()
            if context is None:
                return DONE  # TLS turned off meanwhile: serve it plain
            raw = sock
            try:
                # A peer that reset already: wrap_socket would detach the socket
                # and then fail, leaving the descriptor to an object nobody holds.
                raw.getpeername()
                raw.setblocking(False)
                sock = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            except (ssl.SSLError, OSError) as exc:
                raise TLSHandshakeError("tls:reset", describe_failure(exc)) from None
            self._replace(conn, sock)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            return READ
        except ssl.SSLWantWriteError:
            return WRITE
        except (ssl.SSLError, OSError) as exc:
            raise TLSHandshakeError.of(exc) from None
        sock.setblocking(True)
        idle = self._idle_timeout()
        if idle is not None:
            sock.settimeout(idle)
        return DONE


def upgrade(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    timeout: float,
    then_timeout: float | None,
    wrapped: Callable[[ssl.SSLSocket], None],
) -> ssl.SSLSocket:
    """Make ``sock`` a server-side TLS connection in place (STARTTLS), on this thread.

    The same handshake as the pre-handler step, driven by readiness under one
    deadline for the whole handshake (``timeout``), so a peer that trickles
    bytes cannot stretch it. ``wrapped(new)`` is called as soon as the socket
    is wrapped (``sock`` is detached from then on), before the handshake can
    fail, so the caller always holds the socket that must be closed.
    Afterwards the socket is blocking with ``then_timeout`` as its timeout.
    Raises :class:`TLSHandshakeError` or a ``TimeoutError`` (``tls:timeout``).
    """
    holder = Connection(sock, None)
    result: list[ssl.SSLSocket] = []

    def replace(_conn: Connection, new: ssl.SSLSocket) -> None:
        holder.request = new
        result.append(new)
        wrapped(new)

    record_server_names(context)
    step = HandshakeStep(
        lambda: context, timeout=timeout, idle_timeout=lambda: then_timeout, replace=replace
    )
    prepare_in_place(holder, [step])
    return result[0]


def describe_failure(exc: BaseException) -> str:
    """A handshake failure in a few words (OpenSSL's reason, without its file and line)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"TLS handshake failed: {exc.reason}"
    return f"TLS handshake failed: {str(exc) or type(exc).__name__}"


def send_close_notify(sock: ssl.SSLSocket) -> None:
    """Say goodbye the TLS way (``close_notify``), without waiting for the peer's answer.

    Waiting would let a hostile peer hold the connection open; not saying it
    makes clients such as OpenSSL 3 report an unexpected EOF.
    """
    try:
        sock.setblocking(False)
        sock.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass  # sent (the peer's answer is not awaited), or the connection is gone already


def raw_shutdown(sock: socket.socket, how: int) -> None:
    """``shutdown()`` on the descriptor itself, never through ``SSLSocket.shutdown``.

    From another thread (a drain's abort) ``SSLSocket.shutdown`` drops the
    TLS layer under the handler's feet: its next ``sendall`` would go out in
    the clear. The descriptor-level call just ends the connection.
    """
    socket.socket.shutdown(sock, how)
