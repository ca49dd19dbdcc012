"""A buffered socket reader whose unbounded ``readline()`` is bounded.

``rfile.readline()`` on a plain ``BufferedReader`` keeps reading until it sees
a newline: a client that never sends one makes the server buffer without
limit. :class:`BoundedReader` caps what a ``readline()`` without a size may
return at ``max_line`` bytes (terminator included) and raises
:class:`~sockserve.errors.LineTooLong` past it. A ``readline(n)`` with an
explicit size is the caller's own bound and is left alone (``http.server``
reads its request line that way and answers 414 itself). Iterating over the
file and ``readlines()`` go through ``readline()``, so they are bounded too.
"""

from __future__ import annotations

import io
import socket

from sockserve.errors import LineTooLong

__all__ = ["BoundedReader", "open_bounded_reader"]


class BoundedReader(io.BufferedReader):
    """A ``BufferedReader`` whose size-less ``readline()`` stops at ``max_line`` bytes."""

    def __init__(
        self, raw: io.RawIOBase, buffer_size: int = io.DEFAULT_BUFFER_SIZE, *, max_line: int
    ) -> None:
        super().__init__(raw, buffer_size)
        self.max_line = max_line

    def readline(self, size: int | None = -1, /) -> bytes:
        if size is not None and size >= 0:
            return super().readline(size)
        line = super().readline(self.max_line + 1)
        if len(line) > self.max_line:
            raise LineTooLong(self.max_line)
        return line


def open_bounded_reader(sock: socket.socket, bufsize: int, max_line: int) -> BoundedReader:
    """``sock.makefile("rb", bufsize)``, with ``readline()`` bounded by ``max_line``."""
    # makefile with buffering=0 hands back the raw SocketIO and keeps the
    # socket's reference count of open files right; we add the buffer.
    raw = sock.makefile("rb", buffering=0)
    size = io.DEFAULT_BUFFER_SIZE if bufsize < 0 else max(bufsize, 1)
    return BoundedReader(raw, size, max_line=max_line)
