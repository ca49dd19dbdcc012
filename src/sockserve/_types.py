"""Type aliases shared by the public signatures.

They mirror what the stdlib passes around: a request is a connected socket
for stream servers and a ``(data, socket)`` pair for datagram servers, and an
address is whatever the socket family uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["Address", "HandlerFactory", "Request"]

#: ``(host, port)``, ``(host, port, flowinfo, scope_id)``, a Unix path, or an abstract name.
Address: TypeAlias = tuple[str, int] | tuple[str, int, int, int] | str | bytes | Any

#: A connected ``socket.socket`` (stream servers) or ``(packet, socket)``
#: (datagram servers). Typed as Any, as typeshed does for the stdlib, so a
#: handler can call socket methods on ``self.request`` without a cast.
Request: TypeAlias = Any

#: What ``finish_request`` calls: normally a ``BaseRequestHandler`` subclass.
HandlerFactory: TypeAlias = Callable[..., object]
