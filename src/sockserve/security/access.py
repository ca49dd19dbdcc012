"""Access control: which clients a server serves, decided on the real client before any handler.

``allow`` and ``deny`` take networks (``10.0.0.0/8``, ``2001:db8::/32``, a
single address, ``*`` for all) and, for Unix stream sockets, ``uid:N`` and
``gid:N`` (the peer's credentials, ``SO_PEERCRED``). The rules:

* ``deny`` wins over ``allow``;
* an empty ``allow`` allows everyone (not denied);
* IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, what a dual-stack
  listener reports for IPv4 clients) match the IPv4 networks;
* after a PROXY header the client address is the real client's, so the rules
  apply to it, not to the load balancer; a Unix connection that arrived
  through a proxy has a network address, and network rules apply to it;
* on a Unix socket without a PROXY header there is no address: only the
  ``uid:``/``gid:`` rules apply, and a connection whose credentials cannot be
  read matches none of them.

A refused client is closed before any handler code runs (``reject_request``
with reason ``deny`` or ``not_allowed``) and counted in ``stats().rejected``.
The check is a pre-handler step with no I/O, so it runs at once on the
accepting thread (or right after the PROXY header).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from sockserve.engine.connection import Connection, Refused
from sockserve.engine.prepare import DONE

__all__ = ["AccessRules", "AccessStep", "IPNetwork", "ip_of", "peer_ids"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class AccessRules:
    """Parsed ``allow``/``deny`` lists (see the module doc)."""

    allow_all: bool
    allow_networks: tuple[IPNetwork, ...]
    allow_ids: frozenset[str]
    deny_all: bool
    deny_networks: tuple[IPNetwork, ...]
    deny_ids: frozenset[str]

    @classmethod
    def parse(cls, allow: Sequence[str], deny: Sequence[str]) -> AccessRules:
        a_all, a_nets, a_ids = _split(allow)
        d_all, d_nets, d_ids = _split(deny)
        return cls(not allow or a_all, a_nets, a_ids, d_all, d_nets, d_ids)

    @property
    def restricts(self) -> bool:
        """Whether any client can be refused at all (else the step is not needed)."""
        return not self.allow_all or self.deny_all or bool(self.deny_networks or self.deny_ids)

    def verdict(self, address: object, ids: frozenset[str]) -> str | None:
        """None if the client may be served, else the refusal reason."""
        ip = ip_of(address)
        if self.deny_all or _matches(ip, ids, self.deny_networks, self.deny_ids):
            return "deny"
        if self.allow_all or _matches(ip, ids, self.allow_networks, self.allow_ids):
            return None
        return "not_allowed"


def _split(rules: Sequence[str]) -> tuple[bool, tuple[IPNetwork, ...], frozenset[str]]:
    everyone = "*" in rules
    networks = tuple(
        ipaddress.ip_network(rule, strict=False)
        for rule in rules
        if rule != "*" and not rule.startswith(("uid:", "gid:"))
    )
    ids = frozenset(rule for rule in rules if rule.startswith(("uid:", "gid:")))
    return everyone, networks, ids


def ip_of(address: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of an ``(host, port, ...)`` address (IPv4 for an IPv4-mapped one); else None."""
    if not (isinstance(address, tuple) and address and isinstance(address[0], str)):
        return None
    host = address[0].split("%", 1)[0]  # a scope id (fe80::1%eth0) is not part of the address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _matches(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    ids: frozenset[str],
    networks: tuple[IPNetwork, ...],
    id_rules: frozenset[str],
) -> bool:
    if ip is not None and any(ip in network for network in networks):
        return True
    return bool(ids & id_rules)


def peer_ids(sock: object) -> frozenset[str]:
    """``{"uid:N", "gid:N"}`` of a Unix socket's peer (empty when they cannot be read)."""
    getsockopt = getattr(sock, "getsockopt", None)
    if getsockopt is None or not hasattr(socket, "SO_PEERCRED"):
        return frozenset()
    try:
        _pid, uid, gid = _PEERCRED.unpack(
            getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except (OSError, struct.error):
        return frozenset()
    return frozenset({f"uid:{uid}", f"gid:{gid}"})


class AccessStep:
    """The pre-handler step that refuses clients the rules exclude (no I/O: always cheap)."""

    name = "access control"
    kind = "access"
    cheap = True
    timeout: float | None = None
    #: It never waits: it may run wherever the step before it finished.
    waits_in_place = True

    def __init__(self, rules: AccessRules, *, unix: bool) -> None:
        self.rules = rules
        self._unix = unix

    def advance(self, conn: Connection) -> int:
        ids = (
            peer_ids(conn.request)
            if self._unix and self.rules.allow_ids | self.rules.deny_ids
            else frozenset()
        )
        reason = self.rules.verdict(conn.client_address, ids)
        if reason is not None:
            raise Refused(reason)
        return DONE
