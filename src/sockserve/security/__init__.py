"""What a connection goes through before its handler when the server asks for it.

PROXY protocol headers (:mod:`.proxy`), access control on the real client
(:mod:`.access`) and TLS handshakes (:mod:`.tls`), each a pre-handler step
(:mod:`sockserve.engine.prepare`) with its own timeout; :func:`steps_for`
puts them in their order.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from sockserve.engine.prepare import Step
from sockserve.security.access import AccessRules, AccessStep

if TYPE_CHECKING:
    from sockserve.servers import BaseServer

__all__ = ["steps_for"]


def steps_for(server: BaseServer) -> list[Step]:
    """The pre-handler steps ``server``'s options ask for, in the order they must run.

    The PROXY header first (it is the first thing on the wire, and it tells
    who the client is), then access control on that client, then the TLS
    handshake (no crypto is spent on a client that will be refused).
    """
    steps: list[Step] = []
    rules = AccessRules.parse(server.allow, server.deny)
    if rules.restricts:
        unix = getattr(server, "address_family", None) == socket.AF_UNIX
        steps.append(AccessStep(rules, unix=unix))
    return steps
