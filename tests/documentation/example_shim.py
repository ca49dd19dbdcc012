"""Run a documentation example as ``__main__``, on free loopback ports, saying where it listens.

``python example_shim.py EXAMPLE.py``. Examples are written the way a reader
runs them (``("127.0.0.1", 7000)``, ``("0.0.0.0", 7000)``); tests bind port 0
on loopback only. So, in this process only, every IP bind goes to loopback
with port 0, and each listening socket (stream) or bound socket (datagram)
prints ``example listening on HOST PORT`` on stderr for the test to read.
"""

from __future__ import annotations

import runpy
import socket
import sys
from typing import Any

_bind = socket.socket.bind
_listen = socket.socket.listen


def _announce(sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    kind = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    print(f"example listening on {kind} {host} {port}", file=sys.stderr, flush=True)


def _loopback_bind(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = "127.0.0.1" if self.family == socket.AF_INET else "::1"
        address = (host, 0, *address[2:])
    _bind(self, address)
    if self.type == socket.SOCK_DGRAM and self.family != socket.AF_UNIX:
        _announce(self)


def _announcing_listen(self: socket.socket, *args: Any) -> None:
    _listen(self, *args)
    if self.family != socket.AF_UNIX:
        _announce(self)


def main() -> None:
    socket.socket.bind = _loopback_bind  # type: ignore[method-assign]
    socket.socket.listen = _announcing_listen  # type: ignore[method-assign]
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
