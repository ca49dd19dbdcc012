"""Helpers for testing code that uses sockserve (and for sockserve's own tests).

A server is listening as soon as its constructor returns (the kernel queues
connections until ``serve_forever`` accepts them), so a test needs no sleep
and no polling: connect to ``server.server_address`` straight away.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from sockserve.servers import BaseServer

__all__ = ["serving"]

_S = TypeVar("_S", bound=BaseServer)


@contextmanager
def serving(
    server: _S,
    *,
    poll_interval: float | None = 0.5,
    close: bool = True,
    join_timeout: float = 30.0,
) -> Iterator[_S]:
    """Run ``server.serve_forever`` in a background thread for the ``with`` block.

    On exit the server is shut down (promptly: sockserve's shutdown wakes the
    loop), the thread joined, and, unless ``close=False``, the server closed.
    Raises ``RuntimeError`` if the loop does not stop within ``join_timeout``.
    """
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name=f"sockserve-serving-{type(server).__name__}",
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(join_timeout)
        if close:
            server.server_close()
        if thread.is_alive():
            raise RuntimeError(f"{server!r}: serve_forever did not stop within {join_timeout} s")
