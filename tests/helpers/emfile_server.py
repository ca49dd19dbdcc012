"""A ThreadingTCPServer that runs out of file descriptors on purpose.

Run by tests/serving/test_out_of_descriptors.py as ``python -m
helpers.emfile_server HEADROOM`` (a ThreadingTCPServer), and by
tests/hostile/test_async_faults.py as ``python -m helpers.emfile_server
HEADROOM asyncio|uvloop`` (an AsyncTCPServer on that event loop). The
server's soft RLIMIT_NOFILE is set so that only about HEADROOM more
descriptors can be opened; every handler holds its connection until the
parent says ``release``. The parent opens more connections than that, so
``accept`` fails with EMFILE until it releases them.

Commands (see ``command_loop.py``), one line each way:

* ``cpu`` -> ``CPU <user+system seconds> <monotonic seconds>`` (this process);
* ``release`` -> ``RELEASED`` (held handlers answer ``served`` and end);
* ``stats`` -> ``STATS accepted=N completed=N active=N`` (the server's ``stats()``);
* ``quit``: shut down, close, exit 0.

Logging (level INFO, format ``LEVEL logger: message``) goes to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
import threading
import time

import sockserve
from helpers.command_loop import serve_commands

HOLD_TIMEOUT = 30.0


class _AsyncRelease:
    """The parent's ``release``, for handlers waiting on the server's event loop.

    A handler that starts after the release does not wait at all; the others
    wait on a future each, woken from the command thread through the loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released = False
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._released:
                return
            self._waiting.append((loop, waiter))
        await asyncio.wait_for(waiter, HOLD_TIMEOUT)

    def set(self) -> None:
        with self._lock:
            self._released = True
            waiting, self._waiting = self._waiting, []
        for loop, waiter in waiting:
            loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def async_server(release: _AsyncRelease, event_loop: str) -> sockserve.AsyncTCPServer:
    """An AsyncTCPServer whose handlers hold their connection until ``release``."""

    class Hold(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            await release.wait()
            self.writer.write(b"served\n")
            await self.writer.drain()

    return sockserve.AsyncTCPServer(("127.0.0.1", 0), Hold, event_loop=event_loop)


def main() -> int:
    headroom = int(sys.argv[1])
    kind = sys.argv[2] if len(sys.argv) > 2 else "threading"
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    release = threading.Event()

    class Hold(sockserve.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(HOLD_TIMEOUT)
            release.wait(HOLD_TIMEOUT)
            self.request.sendall(b"served\n")

    def cpu(_args: list[str]) -> str:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return f"CPU {usage.ru_utime + usage.ru_stime:.6f} {time.monotonic():.6f}"

    async_release = _AsyncRelease()

    def let_go() -> None:
        release.set()
        async_release.set()

    def release_all(_args: list[str]) -> str:
        let_go()
        return "RELEASED"

    server: sockserve.BaseServer
    if kind == "threading":
        server = sockserve.ThreadingTCPServer(("127.0.0.1", 0), Hold)
    else:
        server = async_server(async_release, kind)

    def stats(_args: list[str]) -> str:
        now = server.stats()
        return f"STATS accepted={now.accepted} completed={now.completed} active={now.active}"

    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The hard limit too: the start-up check would otherwise raise the soft one
    # for max_connections (core/fdlimit.py), and the episode would never come.
    limit = highest + 1 + headroom
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, min(limit, hard)))
    commands = {"cpu": cpu, "release": release_all, "stats": stats}
    return serve_commands(server, commands, on_quit=let_go)


if __name__ == "__main__":
    sys.exit(main())
