"""A ThreadingTCPServer that runs out of file descriptors on purpose (child of test_fixes).

Usage: ``python emfile_server.py HEADROOM``. The server's soft RLIMIT_NOFILE is
set so that only about HEADROOM more descriptors can be opened; every handler
holds its connection until the parent says ``release``. The parent opens more
connections than that, so ``accept`` fails with EMFILE until it releases them.

Protocol, one line each way, on stdin and stdout:

* at start the child prints ``PORT <port>``;
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

    server = sockserve.ThreadingTCPServer(("127.0.0.1", 0), Hold)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + headroom, hard))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"PORT {server.server_address[1]}", flush=True)

    while command := sys.stdin.readline().strip():
        if command == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime
            print(f"CPU {cpu:.6f} {time.monotonic():.6f}", flush=True)
        elif command == "release":
            release.set()
            print("RELEASED", flush=True)
        elif command == "quit":
            break
    release.set()
    server.shutdown()
    thread.join(HOLD_TIMEOUT)
    server.server_close()
    return 0 if not thread.is_alive() else 1


if __name__ == "__main__":
    sys.exit(main())
