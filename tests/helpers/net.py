"""What tests share at run time: the bound on every wait, and the ``Net`` owner of servers.

Importable from any test module as ``helpers.net`` (``tests/`` is on
``sys.path`` under pytest's default import mode); the ``net`` fixture in
``tests/conftest.py`` hands out one ``Net`` per test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sockserve

#: Bound on every wait in the suite: a socket call, a join, a child's exit.
TIMEOUT = 10.0

_S = TypeVar("_S", bound=sockserve.BaseServer)


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    """Poll until ``predicate()`` is true or the deadline passes; whether it became true.

    Only for state that nothing announces (``/proc``, a pool's counters read
    from outside): anything that can be waited for (an Event, a log line, a
    socket) is waited for instead.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


class Net:
    """Owns the servers, serving threads and sockets a test creates.

    At teardown the serving threads are shut down and joined first, then the
    servers closed, then the sockets: the order a careful program would use.
    """

    def __init__(self) -> None:
        self._servers: list[sockserve.BaseServer] = []
        self._threads: list[tuple[sockserve.BaseServer, threading.Thread]] = []
        self._closables: list[Any] = []

    def server(self, server: _S) -> _S:
        """Register ``server`` so that it is closed at teardown; return it."""
        self._servers.append(server)
        return server

    def serve(self, server: sockserve.BaseServer, poll_interval: float = 0.5) -> threading.Thread:
        """Run ``server.serve_forever`` in a daemon thread until the test ends."""
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": poll_interval},
            name=f"serve-{type(server).__name__}",
            daemon=True,
        )
        thread.start()
        self._threads.append((server, thread))
        return thread

    def stop(self, server: sockserve.BaseServer) -> None:
        """Shut ``server``'s serving thread down and join it (asserting that it ended)."""
        assert _shutdown(server), f"{type(server).__name__}.shutdown() did not return"
        for owner, thread in self._threads:
            if owner is server:
                thread.join(TIMEOUT)
                assert not thread.is_alive(), f"{thread.name}: serve_forever did not return"

    def closing(self, obj: Any) -> Any:
        """Register anything with a ``close()`` method; return it."""
        self._closables.append(obj)
        return obj

    def tcp_client(self, address: Any, timeout: float = TIMEOUT) -> socket.socket:
        """A TCP connection to ``address`` (host, port) with a timeout on every operation."""
        sock = socket.create_connection(address, timeout=timeout)
        return self.closing(sock)  # type: ignore[no-any-return]

    def teardown(self) -> None:
        stuck = []
        for server, thread in self._threads:
            if thread.is_alive():
                if _shutdown(server):
                    thread.join(TIMEOUT)
                if thread.is_alive():
                    stuck.append(thread.name)
        if not stuck:  # closing a server that still serves would only add confusion
            for server in reversed(self._servers):
                server.server_close()
        for obj in reversed(self._closables):
            obj.close()
        assert not stuck, f"serve_forever did not stop: {stuck}"


def _shutdown(server: sockserve.BaseServer) -> bool:
    """Call ``server.shutdown()`` with a deadline (a broken one may never return)."""
    thread = threading.Thread(target=server.shutdown, name="shutdown", daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    return not thread.is_alive()


class SelectWatch:
    """Lets a test wait until a serving loop is blocked in ``select()``.

    sockserve's loop builds its selector from ``sockserve.servers._Selector``
    when ``serve_forever`` starts; the watch replaces that class (patch it
    before serving) with one that counts the calls in progress. A test that
    times ``shutdown()`` waits for the loop to be blocked first, so that a
    shutdown which only works when it races the loop cannot pass.
    """

    def __init__(self, monkeypatch: Any) -> None:
        import sockserve.servers

        self._changed = threading.Condition()
        self._blocked = 0
        watch = self

        class Watched(sockserve.servers._Selector):  # type: ignore[misc,valid-type]
            def select(self, timeout: float | None = None) -> Any:
                with watch._changed:
                    watch._blocked += 1
                    watch._changed.notify_all()
                try:
                    return super().select(timeout)
                finally:
                    with watch._changed:
                        watch._blocked -= 1

        monkeypatch.setattr(sockserve.servers, "_Selector", Watched)

    def wait_until_blocked(self, timeout: float = TIMEOUT) -> bool:
        """Wait until some thread is inside ``select()``; return whether one is."""
        with self._changed:
            return self._changed.wait_for(lambda: self._blocked > 0, timeout)
