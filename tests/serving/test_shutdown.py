"""shutdown() where the stdlib deadlocks or waits: from a handler, and before serving starts.

(A prompt shutdown from another thread, whatever the poll interval, is in the
conformance suite, for every server class.)
"""

from __future__ import annotations

import threading
import time

import sockserve
from helpers.clients import round_trip
from helpers.handlers import OneLineEcho
from helpers.net import TIMEOUT, Net

LOCALHOST = ("127.0.0.1", 0)


def test_shutdown_from_a_handler_on_the_serving_thread_does_not_deadlock(net: Net) -> None:
    returned = threading.Event()

    class StopsTheServer(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            if line == b"stop\n":
                self.server.shutdown()  # the stdlib waits here forever
                returned.set()
            self.wfile.write(line)

    server = net.server(sockserve.TCPServer(LOCALHOST, StopsTheServer))
    thread = net.serve(server, poll_interval=60)
    assert round_trip(server.server_address, b"stop\n") == b"stop\n"
    thread.join(TIMEOUT)
    assert returned.is_set()
    assert not thread.is_alive(), "serve_forever did not return after shutdown() in a handler"

    # The stop request was consumed: the server can serve again.
    again = net.serve(server, poll_interval=60)
    assert round_trip(server.server_address, b"again\n") == b"again\n"
    net.stop(server)
    assert not again.is_alive()


def test_shutdown_requested_before_serve_forever_makes_it_return_at_once(net: Net) -> None:
    server = net.server(sockserve.TCPServer(LOCALHOST, OneLineEcho))
    requested = threading.Event()
    wake = server.wake_loop

    def wake_and_tell() -> None:  # shutdown() sets the stop flag, then wakes the loop
        wake()
        requested.set()

    server.wake_loop = wake_and_tell  # type: ignore[method-assign]
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    assert requested.wait(TIMEOUT)
    assert stopper.is_alive()  # shutdown() waits for a serve_forever to end, as in the stdlib

    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 60})
    started = time.monotonic()
    serving.start()
    serving.join(TIMEOUT)
    elapsed = time.monotonic() - started
    stopper.join(TIMEOUT)

    assert not serving.is_alive()
    assert not stopper.is_alive()
    assert elapsed < 2.0, f"serve_forever ran {elapsed:.2f} s after an earlier shutdown()"
