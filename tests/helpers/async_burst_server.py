"""An AsyncTCPServer line echo in its own process, for the connect-and-reset burst test.

Usage: ``python -m helpers.async_burst_server LOOP`` (``asyncio`` or
``uvloop``). The handler is the hostile-client harness's own
(``benchmarks.hostile.sockserve_handlers.AsyncLineEcho``); the server keeps
its defaults, so what the burst meets is what a user's server would.

The server runs in a process of its own so that the test can read its
descriptors and memory from ``/proc/PID`` while the burst goes on, without
counting the test run's own sockets.

Commands (see ``command_loop.py``), one line each way:

* ``settled N TIMEOUT``: wait until N connections were accepted and every one
  ended -> ``ok`` / ``timeout``;
* ``stats``: ``server.stats().as_dict()`` as JSON;
* ``quit`` (or EOF): stop serving and exit.

Logging (level INFO, format ``LEVEL logger: message``) goes to stderr.
"""

from __future__ import annotations

import json
import logging
import sys

from benchmarks.hostile.sockserve_handlers import AsyncLineEcho

import sockserve
from helpers.command_loop import serve_commands


def main() -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    server = sockserve.AsyncTCPServer(("127.0.0.1", 0), AsyncLineEcho, event_loop=sys.argv[1])

    def settled(args: list[str]) -> str:
        count, timeout = int(args[0]), float(args[1])
        done = server.wait_for(lambda st: st.accepted >= count and st.active == 0, timeout)
        return "ok" if done else "timeout"

    def stats(_args: list[str]) -> str:
        return json.dumps(server.stats().as_dict())

    return serve_commands(server, {"settled": settled, "stats": stats})


if __name__ == "__main__":
    sys.exit(main())
