"""A self-pipe that lets any thread interrupt a blocking ``select``.

The stdlib's ``serve_forever`` only notices ``shutdown()`` when its poll times
out, so a shutdown costs up to ``poll_interval`` (0.5 s by default). Here the
serving loop also watches the read end of a socket pair; ``wake()`` writes one
byte to it and the loop returns from ``select`` at once.
"""

from __future__ import annotations

import socket
from types import TracebackType

__all__ = ["Waker"]


class Waker:
    """A non-blocking socket pair: ``wake()`` from anywhere, ``drain()`` in the loop."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        """The descriptor to register with a selector (readable after a wake)."""
        return self._reader.fileno()

    def write_fileno(self) -> int:
        """The write end's descriptor (for ``signal.set_wakeup_fd``)."""
        return self._writer.fileno()

    def wake(self) -> None:
        """Make the read end readable. Safe from any thread, never blocks."""
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the buffer is full of earlier wake-ups: the loop will wake anyway
        except OSError:
            pass  # closed by the loop while we raced it: nobody is left to wake

    def drain(self) -> None:
        """Consume pending wake-ups so the next ``select`` blocks again."""
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    def __enter__(self) -> Waker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
