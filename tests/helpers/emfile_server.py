"""A ThreadingTCPServer that runs out of file descriptors on purpose.

Run by tests/serving/test_out_of_descriptors.py as ``python -m
helpers.emfile_server HEADROOM``. The server's soft RLIMIT_NOFILE is set so
that only about HEADROOM more descriptors can be opened; every handler holds
its connection until the parent says ``release``. The parent opens more
connections than that, so ``accept`` fails with EMFILE until it releases them.

Commands (see ``command_loop.py``), one line each way:

* ``cpu`` -> ``CPU <user+system seconds> <monotonic seconds>`` (this process);
* ``release`` -> ``RELEASED`` (held handlers answer ``served`` and end);
* ``quit``: shut down, close, exit 0.

Logging (level INFO, format ``LEVEL logger: message``) goes to stderr.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import threading
import time

import sockserve
from helpers.command_loop import serve_commands

HOLD_TIMEOUT = 30.0


def main() -> int:
    headroom = int(sys.argv[1])
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

    def release_all(_args: list[str]) -> str:
        release.set()
        return "RELEASED"

    server = sockserve.ThreadingTCPServer(("127.0.0.1", 0), Hold)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + headroom, hard))
    return serve_commands(server, {"cpu": cpu, "release": release_all}, on_quit=release.set)


if __name__ == "__main__":
    sys.exit(main())
