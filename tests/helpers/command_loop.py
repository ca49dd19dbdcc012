"""The child side of a helper server run in a subprocess: announce, serve, obey stdin.

A helper script (``emfile_server.py``, ``pool_flood_server.py``) builds its
server and a table of commands, then calls :func:`serve_commands`, which

* serves in a thread and prints ``PORT <n>`` (the server listens already);
* answers each line read on stdin with exactly one line on stdout: the
  command's answer, or ``unknown command ...``;
* at ``quit`` or end of input, shuts the server down and closes it, and
  returns the exit status: 0 if the serving thread ended.

The parent side is ``helpers.processes.Child`` (``stdin=True``; ``ask``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping

import sockserve

#: Bound on the serving thread's end after shutdown().
STOP_TIMEOUT = 30.0

Command = Callable[[list[str]], str]


def serve_commands(
    server: sockserve.BaseServer,
    commands: Mapping[str, Command],
    *,
    on_quit: Callable[[], None] | None = None,
) -> int:
    """Serve ``server`` until told to quit; ``commands[word](arguments)`` answers a line."""
    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    print(f"PORT {server.server_address[1]}", flush=True)  # type: ignore[index]
    for raw in sys.stdin:
        words = raw.split()
        if not words or words[0] == "quit":
            break
        command = commands.get(words[0])
        answer = command(words[1:]) if command else f"unknown command {words[0]!r}"
        print(answer, flush=True)
    if on_quit is not None:
        on_quit()
    server.shutdown()
    thread.join(STOP_TIMEOUT)
    server.server_close()
    return 0 if not thread.is_alive() else 1
