"""A line-echo pool server run in its own process for tests/pool/test_flood.py.

Usage: ``python -m helpers.pool_flood_server KIND`` with KIND one of:

* ``pool``: ``sockserve.ThreadPoolTCPServer(max_workers=32)``
* ``pool-readable``: the same with ``dispatch="readable"``

Commands (see ``command_loop.py``), one line each way:

* ``handlers N TIMEOUT``: wait until N handlers have started -> ``ok`` / ``timeout <n>``
* ``accepted N TIMEOUT``: wait until N connections were accepted -> ``ok`` / ``timeout``
* ``stats``: ``server.stats().as_dict()`` as JSON
* ``quit`` (or EOF): stop serving and exit.

The process's thread count and RSS are read from ``/proc/PID/status`` by the test.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import sockserve
from helpers.command_loop import serve_commands

started = 0
started_changed = threading.Condition()


class Echo(sockserve.StreamRequestHandler):
    def handle(self) -> None:
        global started
        with started_changed:
            started += 1
            started_changed.notify_all()
        for line in self.rfile:
            self.wfile.write(line)


def wait_handlers(args: list[str]) -> str:
    count, timeout = int(args[0]), float(args[1])
    deadline = time.monotonic() + timeout
    with started_changed:
        while started < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"timeout {started}"
            started_changed.wait(remaining)
    return "ok"


def main() -> int:
    dispatch = "readable" if sys.argv[1] == "pool-readable" else "immediate"
    server = sockserve.ThreadPoolTCPServer(
        ("127.0.0.1", 0), Echo, max_workers=32, dispatch=dispatch
    )

    def accepted(args: list[str]) -> str:
        count, timeout = int(args[0]), float(args[1])
        return "ok" if server.wait_for(lambda st: st.accepted >= count, timeout) else "timeout"

    def stats(_args: list[str]) -> str:
        return json.dumps(server.stats().as_dict())

    commands = {"handlers": wait_handlers, "accepted": accepted, "stats": stats}
    return serve_commands(server, commands)


if __name__ == "__main__":
    sys.exit(main())
