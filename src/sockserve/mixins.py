"""The stdlib's concurrency mix-ins (a thread or a process per request) and the
ready-made classes that combine them with each server.

Their semantics are the stdlib's, including the unbounded number of threads
(processes are capped by ``max_children``); sockserve's bounded pool is the
answer to that, in its own class, so that code written for these keeps its
behaviour.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import threading
import time
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
    server does not keep a reference to every thread it ever started. The
    methods are the stdlib's private ones (``reap``, ``pop_all``, ``join``):
    code in the wild counts and joins ``server._threads`` through them.
    """

    def append(self, thread: threading.Thread) -> None:
        self.reap()
        if not thread.daemon:
            super().append(thread)

    def reap(self) -> None:
        """Forget the threads that have finished."""
        self[:] = [t for t in self if t.is_alive()]

    def pop_all(self) -> list[threading.Thread]:
        """Empty the record; return what it held."""
        taken, self[:] = self[:], []
        return taken

    def join(self) -> None:
        """Wait for every thread recorded so far."""
        for thread in self.pop_all():
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
    _dispatches_in_background = True

    def process_request_thread(self, request: Request, client_address: Address) -> None:
        """The body of a request thread: handle, report errors, shut the request down."""
        self._run_request(request, client_address)  # type: ignore[attr-defined]

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
        if getattr(self, "socket_type", None) == socket.SOCK_DGRAM:
            # Datagram handlers reply through the server's one socket: let the
            # ones in flight finish before it closes, or their replies are lost.
            self._threads.join()
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
    _dispatches_in_background = True
    #: pid -> the request that child handles; its entry in the connection
    #: tracker is released when the child is reaped.
    _child_requests: dict[int, Request] | None = None

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children; wait while at ``max_children``, or for all if blocking."""
        if self.active_children is None:
            return
        # At the cap: wait for one of our children to exit, so the next fork
        # stays under it; in slices, so a shutdown or drain is not held up.
        while len(self.active_children) >= self.max_children:
            if self._stop_pending():  # type: ignore[attr-defined]
                break
            wait_for_any_exit(self.active_children, 0.1)
            self._reap(self.active_children.copy(), os.WNOHANG)
        self._reap(self.active_children.copy(), 0 if blocking else os.WNOHANG)

    def _reap(self, pids: set[int], flags: int) -> None:
        """waitpid each of ``pids`` (only ours: never another part of the program's children)."""
        for pid in pids:
            try:
                reaped, _status = os.waitpid(pid, flags)
                if reaped:  # (0, 0) means the child is still running
                    self._child_reaped(reaped)
            except ChildProcessError:
                self._child_reaped(pid)  # reaped elsewhere already
            except OSError:
                pass

    def _child_reaped(self, pid: int) -> None:
        if self.active_children is not None:
            self.active_children.discard(pid)
        if self._child_requests is not None and pid in self._child_requests:
            self._tracker.release(self._child_requests.pop(pid))  # type: ignore[attr-defined]

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
            if self._child_requests is None:
                self._child_requests = {}
            self.active_children.add(pid)
            self._child_requests[pid] = request
            self.close_request(request)  # type: ignore[attr-defined]
            return
        # In the child: never return into the parent's serving loop. A stream
        # child drops its copy of the listener, so that closing it in the
        # parent (a drain) makes the kernel refuse new clients at once.
        if getattr(self, "socket_type", None) == socket.SOCK_STREAM:
            self.socket.close()  # type: ignore[attr-defined]
        status = 1
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
            status = 0
        except Exception:
            self._request_failed(request, client_address)  # type: ignore[attr-defined]
        finally:
            try:
                self.shutdown_request(request)  # type: ignore[attr-defined]
            finally:
                os._exit(status)

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        self.collect_children(blocking=self.block_on_close)

    def _wait_for_requests(self, deadline: float, *, stop_on_force: bool = False) -> bool:
        """Drain: reap children as they exit until none is left or the deadline."""
        force = self._lifecycle.force  # type: ignore[attr-defined]
        while True:
            self.collect_children()
            if not self.active_children:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop_on_force and force.is_set()):
                return False
            # Short slices when a force may arrive, so it is noticed promptly.
            wait_for_any_exit(self.active_children, min(remaining, 0.1))

    def _abort_requests(self) -> None:
        """Drain deadline: kill the children still running.

        SIGKILL, not SIGTERM: a child inherits the parent's Python signal
        handlers, which for a server usually only record SIGTERM.
        """
        for pid in list(self.active_children or ()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited meanwhile; collect_children reaps it


def wait_for_any_exit(pids: set[int], timeout: float) -> None:
    """Block until one of ``pids`` exits or ``timeout`` passes, without polling.

    Uses Linux pidfds; where they are missing, waits the timeout slice out.
    """
    if not hasattr(os, "pidfd_open"):
        time.sleep(min(timeout, 0.05))
        return
    fds: list[int] = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                return  # already exited: the caller reaps it now
        with selectors.DefaultSelector() as selector:
            for fd in fds:
                selector.register(fd, selectors.EVENT_READ)
            selector.select(timeout)
    finally:
        for fd in fds:
            os.close(fd)


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
