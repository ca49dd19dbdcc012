"""The stdlib's concurrency mix-ins (a thread or a process per request) and the
ready-made classes that combine them with each server.

Their semantics are the stdlib's, including the unbounded number of threads
(processes are capped by ``max_children``); sockserve's bounded pool is the
answer to that, in its own class, so that code written for these keeps its
behaviour. Each mix-in chooses its strategy (:mod:`sockserve.strategies`) and
keeps the stdlib's attributes and hooks on top of it.
"""

from __future__ import annotations

from typing import Any

from sockserve._types import Address, Request
from sockserve.engine.pipeline import ConnectionPipeline
from sockserve.servers import (
    MixInBase,
    TCPServer,
    UDPServer,
    UnixDatagramServer,
    UnixStreamServer,
)
from sockserve.strategies.base import Strategy
from sockserve.strategies.fork import ForkPerConnection

# The stdlib's private names, which code in the wild uses (server._threads).
from sockserve.strategies.threads import ThreadPerConnection, _NoThreads

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


class ThreadingMixIn(MixInBase):
    """Handle each request in a new thread.

    ``daemon_threads``: make request threads daemonic (the interpreter does
    not wait for them at exit). ``block_on_close``: ``server_close`` waits for
    the non-daemon request threads still running.
    """

    daemon_threads: bool = False
    block_on_close: bool = True
    #: The non-daemon threads ``server_close`` joins (the stdlib's private name).
    _threads: Any = _NoThreads()

    def _make_strategy(self, pipeline: ConnectionPipeline) -> Strategy:
        return ThreadPerConnection(self, pipeline.tracker)

    def _blocks_on_close(self) -> bool:
        return self.block_on_close

    def process_request_thread(self, request: Request, client_address: Address) -> None:
        """The body of a request thread: handle, report errors, shut the request down."""
        pipeline = self._pipeline
        pipeline.serve(pipeline.connection_for(request, client_address))

    def process_request(self, request: Request, client_address: Address) -> None:
        """Start a thread to handle the request."""
        pipeline = self._pipeline
        pipeline.submit(pipeline.connection_for(request, client_address))

    def server_close(self) -> None:
        """Close, then (``block_on_close``) join the request threads still running."""
        super().server_close()


class ForkingMixIn(MixInBase):
    """Handle each request in a forked child process.

    ``max_children`` caps the children alive at once (the parent waits for
    one to exit before forking another); ``active_children`` holds their
    pids; ``block_on_close`` makes ``server_close`` wait for all of them.
    """

    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children: int = 40
    block_on_close: bool = True
    _forks: ForkPerConnection

    def _make_strategy(self, pipeline: ConnectionPipeline) -> Strategy:
        self._forks = ForkPerConnection(
            self,
            pipeline.serve,
            pipeline.tracker,
            listener=self._listening_socket,
            stopping=self._stop_pending,
        )
        return self._forks

    def _blocks_on_close(self) -> bool:
        return self.block_on_close

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children; wait while at ``max_children``, or for all if blocking."""
        self._forks.collect(blocking=blocking)

    def handle_timeout(self) -> None:
        """Reap children while ``handle_request`` waits."""
        self.collect_children()

    def service_actions(self) -> None:
        """Reap children once per ``serve_forever`` iteration."""
        self.collect_children()

    def process_request(self, request: Request, client_address: Address) -> None:
        """Fork; the child handles the request and exits, the parent closes its copy."""
        pipeline = self._pipeline
        pipeline.submit(pipeline.connection_for(request, client_address))

    def server_close(self) -> None:
        """Close, then (``block_on_close``) wait for the children still running."""
        super().server_close()


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
