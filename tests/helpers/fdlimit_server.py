"""A server started under a lowered RLIMIT_NOFILE, to see what its start-up check does.

Run by tests/limits/test_fd_limit.py as ``python -m helpers.fdlimit_server
SOFT HARD CLASS MAX_CONNECTIONS`` (MAX_CONNECTIONS may be ``default``). It sets
the limit, builds ``sockserve.CLASS`` on 127.0.0.1, serves and shuts down
twice (a second start must not log again), then prints ``LIMIT SOFT HARD``
(the limit afterwards) on stdout and exits. Logging (level INFO, format
``LEVEL logger: message``) goes to stderr.
"""

from __future__ import annotations

import logging
import resource
import sys
import threading

import sockserve
from helpers.handlers import OneLineEcho

TIMEOUT = 10.0


class AsyncEcho(sockserve.AsyncStreamRequestHandler):
    async def handle(self) -> None:
        self.writer.write(await self.reader.readline())
        await self.writer.drain()


def main() -> int:
    soft, hard, name, max_connections = sys.argv[1:5]
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(soft), int(hard)))
    cls = getattr(sockserve, name)
    handler = AsyncEcho if cls is sockserve.AsyncTCPServer else OneLineEcho
    options = {} if max_connections == "default" else {"max_connections": int(max_connections)}
    with cls(("127.0.0.1", 0), handler, **options) as server:
        for _ in range(2):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
            thread.start()
            server.shutdown()
            thread.join(TIMEOUT)
    now = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"LIMIT {now[0]} {now[1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
