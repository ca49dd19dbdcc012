"""The hostile-client handlers on sockserve's base classes, importable by dotted path.

``sockserve run benchmarks.hostile.sockserve_handlers:LineEcho`` needs a module
attribute; the async strategy needs the coroutine form of the same protocol
(see :mod:`benchmarks.hostile.handlers`).
"""

from __future__ import annotations

import sockserve
from benchmarks.hostile.handlers import RAISE, HandlerExploded, big_size, blocks, line_echo_class

LineEcho = line_echo_class(sockserve.StreamRequestHandler, "LineEcho")


class AsyncLineEcho(sockserve.AsyncStreamRequestHandler):
    """The line echo with coroutines: readline, write, drain."""

    async def handle(self) -> None:
        reader, writer = self.reader, self.writer
        while line := await reader.readline():
            if line == RAISE:
                raise HandlerExploded("RAISE: the handler fails, as a bug would")
            size = big_size(line)
            if size is None:
                writer.write(line)
            else:
                for block in blocks(size):
                    writer.write(block)
                    await writer.drain()
            await writer.drain()


__all__ = ["AsyncLineEcho", "LineEcho"]
