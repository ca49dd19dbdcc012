"""Bind specifications: the text an operator types after ``--bind``, parsed without I/O.

One syntax covers every kind of listener, so the command line (and, later, a
configuration file) need no separate option per transport::

    127.0.0.1:7000          TCP on one IPv4 address (or a host name, resolved by bind)
    [::1]:7000              TCP on one IPv6 address (brackets are required)
    :7000                   TCP on every address, IPv4 and IPv6 when the platform has IPv6
    tcp://HOST:PORT         the same forms with the transport spelled out
    tls://HOST:PORT         TLS on this listener only (also tls://unix:PATH), where the
                            run's other listeners stay plain
    udp://HOST:PORT         UDP, with the same host forms
    unix:/run/echo.sock     a Unix stream socket (unix:@name: Linux abstract namespace)
    fd://3                  an inherited, already bound socket (e.g. from systemd)

Parsing never touches the network: host names stay names (the socket's bind
resolves them, and reports failures as bind errors), so a spec can be checked
before anything is opened. Every malformed spec raises :class:`BindSpecError`,
whose message quotes the spec and says what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = [
    "BindSpec",
    "BindSpecError",
    "Transport",
    "parse_bind_spec",
]

#: The syntax, for error messages: what the operator can type instead.
SYNTAX = "HOST:PORT, [IPV6]:PORT, :PORT, tcp://..., tls://..., udp://..., unix:PATH or fd://N"

_MAX_PORT = 65535

# A host name or IPv4 literal: what bind() can resolve. Rejecting anything else
# here turns typos such as "127.0.0.1 :80" into a usage error, not a DNS failure.
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class BindSpecError(ValueError):
    """A bind spec that cannot be parsed; the message names the spec and the problem."""

    def __init__(self, spec: str, problem: str) -> None:
        super().__init__(f"invalid bind address {spec!r}: {problem}")
        self.spec = spec
        self.problem = problem


class Transport(StrEnum):
    """How a listener talks: the scheme of the spec."""

    TCP = "tcp"
    UDP = "udp"
    UNIX = "unix"
    FD = "fd"


@dataclass(frozen=True, slots=True)
class BindSpec:
    """One parsed bind spec: enough to create and bind the socket, and to print it back.

    ``address`` is ``(host, port)`` for TCP and UDP (ready for ``bind``), the
    socket path for Unix sockets (a leading NUL for the abstract namespace),
    and the descriptor number for ``fd``. ``family`` is ``AF_UNSPEC`` for
    ``fd``: only the descriptor itself knows. ``dual_stack`` marks the
    all-addresses IPv6 wildcard, which must be bound with ``IPV6_V6ONLY``
    cleared so that it also accepts IPv4 clients.

    ``str(spec)`` is the canonical spelling, which parses back to an equal spec.
    """

    transport: Transport
    family: socket.AddressFamily
    address: tuple[str, int] | str | int
    dual_stack: bool = False
    #: Serve TLS on this listener (``tls://...``), where others of the run are plain.
    tls: bool = False

    def __str__(self) -> str:
        if self.tls:
            return "tls://" + str(replace(self, tls=False))
        if self.transport is Transport.FD:
            return f"fd://{self.address}"
        if self.transport is Transport.UNIX:
            path = self.address
            assert isinstance(path, str)
            return "unix:" + ("@" + path[1:] if path.startswith("\0") else path)
        host, port = self.inet_address
        if self.dual_stack:
            host = ""
        elif self.family == socket.AF_INET6:
            host = f"[{host}]"
        return f"{self.transport}://{host}:{port}"

    @property
    def inet_address(self) -> tuple[str, int]:
        """``(host, port)`` of a TCP or UDP spec; TypeError for the others."""
        if not isinstance(self.address, tuple):
            raise TypeError(f"{self} has no host and port")
        return self.address

    def bound_to(self, sockname: object) -> BindSpec:
        """This spec with the address a socket really got (``getsockname()``).

        Port 0 becomes the port the kernel chose, and a host name the address
        it resolved to, so the result is what clients should connect to. The
        dual-stack wildcard stays a wildcard.
        """
        if isinstance(sockname, tuple) and self.transport in (Transport.TCP, Transport.UDP):
            host, port = sockname[0], sockname[1]
            return replace(self, address=(self.inet_address[0] if self.dual_stack else host, port))
        return self


def parse_bind_spec(spec: str, *, ipv6: bool = socket.has_ipv6) -> BindSpec:
    """Parse ``spec`` (see the module docstring for the syntax).

    ``ipv6`` says whether ``:PORT`` may use the dual-stack IPv6 wildcard; it is
    a parameter so that both outcomes can be tested on any machine.
    """
    if not spec:
        raise BindSpecError(spec, f"empty; expected {SYNTAX}")
    if spec.startswith("unix:"):
        return _parse_unix(spec, spec.removeprefix("unix:"))
    scheme, sep, rest = spec.partition("://")
    if not sep:
        return _parse_inet(spec, spec, Transport.TCP, ipv6)
    if scheme in ("tcp", "udp"):
        return _parse_inet(spec, rest, Transport(scheme), ipv6)
    if scheme == "tls":
        inner = parse_bind_spec(rest, ipv6=ipv6) if rest else None
        if inner is None or inner.transport not in (Transport.TCP, Transport.UNIX) or inner.tls:
            raise BindSpecError(spec, "tls:// takes HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH")
        return replace(inner, tls=True)
    if scheme == "fd":
        return _parse_fd(spec, rest)
    raise BindSpecError(spec, f"unknown scheme {scheme + '://'!r}; expected {SYNTAX}")


def _parse_unix(spec: str, path: str) -> BindSpec:
    if not path:
        raise BindSpecError(spec, "empty socket path after 'unix:'")
    if "\0" in path:
        raise BindSpecError(spec, "NUL character in socket path")
    if path.startswith("@"):
        if len(path) == 1:
            raise BindSpecError(spec, "empty abstract socket name after 'unix:@'")
        path = "\0" + path[1:]  # Linux's abstract namespace: no file at all
    return BindSpec(Transport.UNIX, socket.AF_UNIX, path)


def _parse_fd(spec: str, number: str) -> BindSpec:
    if not (number.isascii() and number.isdigit()):
        raise BindSpecError(spec, f"file descriptor {number!r} is not a non-negative integer")
    return BindSpec(Transport.FD, socket.AF_UNSPEC, int(number))


def _parse_inet(spec: str, hostport: str, transport: Transport, ipv6: bool) -> BindSpec:
    """Parse ``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (after any scheme)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise BindSpecError(spec, "'[' without a closing ']' around the IPv6 address")
        host, after = hostport[1:end], hostport[end + 1 :]
        if not after.startswith(":"):
            raise BindSpecError(spec, "missing ':PORT' after the bracketed IPv6 address")
        port = _parse_port(spec, after[1:])
        if not host:
            raise BindSpecError(spec, "empty IPv6 address between '[' and ']'")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BindSpecError(spec, f"{host!r} is not an IPv6 address") from None
        return BindSpec(transport, socket.AF_INET6, (host, port))

    host, colon, port_text = hostport.rpartition(":")
    if not colon:
        raise BindSpecError(spec, f"missing ':PORT'; expected {SYNTAX}")
    if ":" in host:
        raise BindSpecError(spec, "an IPv6 address must be in brackets, e.g. [::1]:7000")
    if "[" in host or "]" in host:
        raise BindSpecError(spec, "misplaced '[' or ']'; write an IPv6 address as [ADDR]:PORT")
    port = _parse_port(spec, port_text)
    if not host:
        if ipv6:
            return BindSpec(transport, socket.AF_INET6, ("::", port), dual_stack=True)
        return BindSpec(transport, socket.AF_INET, ("0.0.0.0", port))
    if not _HOST_NAME.fullmatch(host):
        raise BindSpecError(spec, f"{host!r} is not a valid host name or IPv4 address")
    # A host name is resolved by bind() on an IPv4 socket: IPv6 needs brackets.
    return BindSpec(transport, socket.AF_INET, (host, port))


def _parse_port(spec: str, text: str) -> int:
    if not text:
        raise BindSpecError(spec, "missing port number after ':'")
    if not (text.isascii() and text.isdigit()):
        raise BindSpecError(spec, f"port {text!r} is not a number")
    port = int(text)
    if port > _MAX_PORT:
        raise BindSpecError(spec, f"port {port} is out of range 0-{_MAX_PORT}")
    return port
