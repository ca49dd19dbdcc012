"""The stdlib's concurrency mix-ins (a thread or a process per request) and the
ready-made classes that combine them with each server.

Their semantics are the stdlib's, including the unbounded number of threads
(processes are capped by ``max_children``); sockserve's bounded pool is the
answer to that, in its own class, so that code written for these keeps its
behaviour.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from sockserve._types import Address, Request
from sockserve.servers import TCPServer, UDPServer, UnixDatagramServer, UnixStreamServer

__all__ = [
    "ForkingMixIn",
    "ForkingTCPServer",
    "ForkingUDPServer",
    "ForkingUnixDatagramServer",
    "ForkingUnixStreamServer",
    "ThreadingMixIn",
    "ThreadingTCPServer",
    "ThreadingUDPServer",
    "ThreadingUnixDatagramServer",
    "ThreadingUnixStreamServer",
]


class _Threads(list[threading.Thread]):
    """The non-daemon request threads ``server_close`` must join.

    Finished threads are dropped whenever a new one is added, so a long-running
    server does not keep a reference to every thread it ever started.
    """

    def append(self, thread: threading.Thread) -> None:
        self[:] = [t for t in self if t.is_alive()]
        if not thread.daemon:
            super().append(thread)

    def join(self) -> None:
        """Wait for every thread recorded so far."""
        pending, self[:] = self[:], []
        for thread in pending:
            thread.join()


class _NoThreads:
    """Stands in for ``_Threads`` when ``block_on_close`` is off: records nothing."""

    def append(self, thread: threading.Thread) -> None:
        pass

    def join(self) -> None:
        pass

    def __len__(self) -> int:
        return 0


class ThreadingMixIn:
    """Handle each request in a new thread.

    ``daemon_threads``: make request threads daemonic (the interpreter does
    not wait for them at exit). ``block_on_close``: ``server_close`` waits for
    the non-daemon request threads still running.
    """

    daemon_threads: bool = False
    block_on_close: bool = True
    _threads: Any = _NoThreads()

    def process_request_thread(self, request: Request, client_address: Address) -> None:
        """The body of a request thread: like ``BaseServer.process_request``, guarded."""
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
        except Exception:
            self.handle_error(request, client_address)  # type: ignore[attr-defined]
        finally:
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def process_request(self, request: Request, client_address: Address) -> None:
        """Start a thread to handle the request."""
        if self.block_on_close:
            # Per instance, so servers never share one list through the class.
            vars(self).setdefault("_threads", _Threads())
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address)
        )
        thread.daemon = self.daemon_threads
        self._threads.append(thread)
        thread.start()

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        self._threads.join()


class ForkingMixIn:
    """Handle each request in a forked child process.

    ``max_children`` caps the children alive at once (the parent waits for
    one to exit before forking another); ``active_children`` holds their
    pids; ``block_on_close`` makes ``server_close`` wait for all of them.
    """

    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children: int = 40
    block_on_close: bool = True

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children; wait while at ``max_children``, or for all if blocking."""
        if self.active_children is None:
            return
        # At the cap: wait for any child, so the next fork stays under it.
        while len(self.active_children) >= self.max_children:
            try:
                pid, _status = os.waitpid(-1, 0)
                self.active_children.discard(pid)
            except ChildProcessError:
                self.active_children.clear()  # none left at all
            except OSError:
                break
        flags = 0 if blocking else os.WNOHANG
        for pid in self.active_children.copy():
            try:
                reaped, _status = os.waitpid(pid, flags)
                # waitpid returns (0, 0) for a child still running.
                self.active_children.discard(reaped)
            except ChildProcessError:
                self.active_children.discard(pid)  # reaped elsewhere already
            except OSError:
                pass

    def handle_timeout(self) -> None:
        """Reap children while ``handle_request`` waits."""
        self.collect_children()

    def service_actions(self) -> None:
        """Reap children once per ``serve_forever`` iteration."""
        self.collect_children()

    def process_request(self, request: Request, client_address: Address) -> None:
        """Fork; the child handles the request and exits, the parent closes its copy."""
        pid = os.fork()
        if pid:
            if self.active_children is None:
                self.active_children = set()
            self.active_children.add(pid)
            self.close_request(request)  # type: ignore[attr-defined]
            return
        # In the child: never return into the parent's serving loop.
        status = 1
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
            status = 0
        except Exception:
            self.handle_error(request, client_address)  # type: ignore[attr-defined]
        finally:
            try:
                self.shutdown_request(request)  # type: ignore[attr-defined]
            finally:
                os._exit(status)

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        self.collect_children(blocking=self.block_on_close)


class ForkingUDPServer(ForkingMixIn, UDPServer):
    pass


class ForkingTCPServer(ForkingMixIn, TCPServer):
    pass


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    pass


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    pass


class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
    pass


class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
    pass


class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
    pass


class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
    pass
