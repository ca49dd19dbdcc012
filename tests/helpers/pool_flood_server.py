"""A line-echo server run in its own process for tests/pool/test_flood.py.

Usage: ``python pool_flood_server.py KIND`` with KIND one of:

* ``pool``: ``sockserve.ThreadPoolTCPServer(max_workers=32)``
* ``pool-readable``: the same with ``dispatch="readable"``
* ``stdlib``: the standard library's ``socketserver.ThreadingTCPServer``
  (with the listen backlog raised to SOMAXCONN, so that the flood measures
  a thread per connection, not the stdlib's backlog of 5)

It prints ``PORT <n>`` once listening, then obeys commands read from stdin,
one per line, answering each with one line:

* ``handlers N TIMEOUT``: wait until N handlers have started -> ``ok`` / ``timeout <n>``
* ``accepted N TIMEOUT``: (sockserve) wait until N connections were accepted
  and the server stopped accepting or accepted them all -> ``ok`` / ``timeout``
* ``stats``: (sockserve) ``server.stats().as_dict()`` as JSON
* ``quit`` (or EOF): stop serving and exit.

The process's thread count and RSS are read from ``/proc/PID/status`` by the test.
"""

from __future__ import annotations

import json
import socket
import socketserver as stdlib_socketserver
import sys
import threading
import time

started = 0
started_changed = threading.Condition()


def build(kind: str) -> stdlib_socketserver.BaseServer:
    if kind == "stdlib":
        base = stdlib_socketserver
    else:
        import sockserve as base  # type: ignore[no-redef]

    class Echo(base.StreamRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            global started
            with started_changed:
                started += 1
                started_changed.notify_all()
            for line in self.rfile:
                self.wfile.write(line)

    if kind == "stdlib":

        class Threading(stdlib_socketserver.ThreadingTCPServer):
            request_queue_size = socket.SOMAXCONN
            daemon_threads = True

        return Threading(("127.0.0.1", 0), Echo)
    dispatch = "readable" if kind == "pool-readable" else "immediate"
    return base.ThreadPoolTCPServer(  # type: ignore[attr-defined,no-any-return]
        ("127.0.0.1", 0), Echo, max_workers=32, dispatch=dispatch
    )


def wait_handlers(count: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    with started_changed:
        while started < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"timeout {started}"
            started_changed.wait(remaining)
    return "ok"


def control(server: stdlib_socketserver.BaseServer) -> None:
    try:
        for raw in sys.stdin:
            words = raw.split()
            if not words or words[0] == "quit":
                break
            if words[0] == "handlers":
                answer = wait_handlers(int(words[1]), float(words[2]))
            elif words[0] == "accepted":
                count = int(words[1])
                ok = server.wait_for(  # type: ignore[attr-defined]
                    lambda st, count=count: st.accepted >= count, float(words[2])
                )
                answer = "ok" if ok else "timeout"
            elif words[0] == "stats":
                answer = json.dumps(server.stats().as_dict())  # type: ignore[attr-defined]
            else:
                answer = f"unknown command {words[0]!r}"
            print(answer, flush=True)
    finally:
        server.shutdown()


def main() -> None:
    server = build(sys.argv[1])
    print(f"PORT {server.server_address[1]}", flush=True)  # type: ignore[index]
    controller = threading.Thread(target=control, args=(server,), name="control", daemon=True)
    controller.start()
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
