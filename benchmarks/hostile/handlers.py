"""The protocol every hostile-client server speaks: a line echo with two commands.

The handler is the one from the issue, ``for line in self.rfile:
self.wfile.write(line)``, so what the attacks find is what a user's own line
protocol would meet. Two lines are commands instead of text, because some
attacks need a long answer or a failing handler and every server under test
must still answer the fresh-client probe with an echo:

* ``BIG <n>`` writes ``n`` bytes back (in blocks, so the server's memory is
  not what is measured), then goes on reading lines;
* ``RAISE`` makes the handler raise, as a bug in user code would.

Any other line comes back unchanged. This module imports no sockserve: the
stdlib's server is built from the same factory with the stdlib's base class.
"""

from __future__ import annotations

from typing import Any

#: Start of the "long answer" command: ``BIG 10485760\n``.
BIG = b"BIG "
#: The line that makes the handler raise.
RAISE = b"RAISE\n"
#: One block of a long answer (written repeatedly: memory stays bounded).
BLOCK = b"x" * 65536


class HandlerExploded(RuntimeError):
    """The failure a ``RAISE`` line provokes (a stand-in for a bug in user code)."""


def big_size(line: bytes) -> int | None:
    """The size a ``BIG <n>`` line asks for, or None if the line is not one."""
    if not line.startswith(BIG):
        return None
    try:
        return max(0, int(line[len(BIG) :]))
    except ValueError:
        return None


def blocks(size: int) -> list[memoryview]:
    """``size`` bytes of answer as views of :data:`BLOCK` (no copy per block)."""
    whole, rest = divmod(size, len(BLOCK))
    view = memoryview(BLOCK)
    return [view] * whole + ([view[:rest]] if rest else [])


def line_echo_class(base: type[Any], name: str = "LineEcho") -> type[Any]:
    """A ``StreamRequestHandler`` subclass of ``base`` that echoes lines (see the module doc)."""

    def handle(self: Any) -> None:
        for line in self.rfile:
            if line == RAISE:
                raise HandlerExploded("RAISE: the handler fails, as a bug would")
            size = big_size(line)
            if size is None:
                self.wfile.write(line)
                continue
            for block in blocks(size):
                self.wfile.write(block)

    return type(name, (base,), {"handle": handle, "__doc__": "Echo lines (see hostile.handlers)."})
