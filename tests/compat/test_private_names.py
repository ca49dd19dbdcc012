"""The stdlib's private names that code in the wild leans on, on ``socketserver`` and sockserve.

Each was found in public code: a handler or a signal handler setting
``server._BaseServer__shutdown_request = True`` to stop ``serve_forever``
without ``shutdown()``'s deadlock; a handler reading
``_BaseServer__is_shut_down`` (through ``vars(server)``, even); tests patching
``socketserver._ServerSelector`` to watch or fake the serving loop's waits;
``len(server._threads)``; ``socketserver.socket.SOL_SOCKET``. Every test runs
on both modules and expects the same.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys
import threading
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

import sockserve
from helpers.net import TIMEOUT

from ._both import LOCALHOST, MODULE_IDS, MODULES, POLL, echo_handler, round_trip, serving


@pytest.fixture(params=MODULES, ids=MODULE_IDS)
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def test_module_level_names(mod: ModuleType) -> None:
    assert mod.socket is socket
    assert mod.selectors is selectors
    assert issubclass(mod._ServerSelector, selectors.BaseSelector)
    assert issubclass(mod._Threads, list)
    assert callable(mod._NoThreads().append) and callable(mod._NoThreads().join)
    assert issubclass(mod._SocketWriter, __import__("io").BufferedIOBase)


def test_shutdown_flag_set_by_a_handler_stops_serve_forever(mod: ModuleType) -> None:
    """The pre-3.x idiom for stopping a single-threaded server from one of its handlers."""

    class Quit(mod.StreamRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            self.wfile.write(b"bye\n")
            self.server._BaseServer__shutdown_request = True

    with mod.TCPServer(LOCALHOST, Quit) as server:
        loop = threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True)
        loop.start()
        try:
            assert round_trip(server.server_address) == b"bye\n"
            loop.join(TIMEOUT)
            assert not loop.is_alive(), "serve_forever ignored the flag"
        finally:
            if loop.is_alive():
                server.shutdown()
        # serve_forever resets the flag as it returns: the server can serve again.
        assert vars(server)["_BaseServer__shutdown_request"] is False


def test_shutdown_flag_set_by_a_signal_handler_stops_serve_forever(mod: ModuleType) -> None:
    """The flag set from a signal handler while the main thread serves: no deadlock, it returns."""
    with mod.TCPServer(LOCALHOST, echo_handler(mod)) as server:
        main = threading.main_thread().ident
        assert main == threading.get_ident()
        sent = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            server._BaseServer__shutdown_request = True

        def signal_once_serving() -> None:
            # The reply proves the loop runs on the main thread; then signal it.
            if round_trip(server.server_address) == b"ping\n":
                signal.pthread_kill(main, signal.SIGUSR1)  # type: ignore[arg-type]
                sent.set()

        def guard() -> None:
            # Never let a broken server hang the suite: stop it the normal way.
            if not stopped.wait(TIMEOUT):
                server.shutdown()

        stopped = threading.Event()
        previous = signal.signal(signal.SIGUSR1, request_stop)
        sender = threading.Thread(target=signal_once_serving, daemon=True)
        watchdog = threading.Thread(target=guard, daemon=True)
        try:
            sender.start()
            watchdog.start()
            server.serve_forever(poll_interval=POLL)
            stopped_by_signal = sent.is_set()
            stopped.set()
        finally:
            stopped.set()
            signal.signal(signal.SIGUSR1, previous)
            sender.join(TIMEOUT)
            watchdog.join(TIMEOUT)
        assert stopped_by_signal


def test_is_shut_down_event_tells_whether_the_loop_runs(mod: ModuleType) -> None:
    with mod.TCPServer(LOCALHOST, echo_handler(mod)) as server:
        is_shut_down = vars(server)["_BaseServer__is_shut_down"]
        assert server._BaseServer__is_shut_down is is_shut_down
        assert isinstance(is_shut_down, threading.Event)
        assert not is_shut_down.is_set()  # never served yet: as in the stdlib
        with serving(server):
            assert round_trip(server.server_address) == b"ping\n"
            assert not is_shut_down.is_set()
            assert vars(server)["_BaseServer__shutdown_request"] is False
        assert is_shut_down.is_set()


def _recording_selector(mod: ModuleType, seen: list[str]) -> type[Any]:
    class Recording(mod._ServerSelector):  # type: ignore[name-defined,misc]
        def select(self, timeout: float | None = None) -> Any:
            seen.append(threading.current_thread().name)
            return super().select(timeout)

    return Recording


def test_patching_server_selector_reaches_the_loop(
    mod: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(mod, "_ServerSelector", _recording_selector(mod, seen))
    with mod.TCPServer(LOCALHOST, echo_handler(mod)) as server:
        server.timeout = TIMEOUT
        with serving(server):
            assert round_trip(server.server_address) == b"ping\n"
        assert "test-serve" in seen  # serve_forever waited through the patched class
        seen.clear()
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"ping\n")
            server.handle_request()
            assert client.recv(4096) == b"ping\n"
        assert seen == [threading.current_thread().name]  # and so did handle_request


def test_mock_patch_of_the_stdlib_name_reaches_sockserve(monkeypatch: pytest.MonkeyPatch) -> None:
    """With sockserve standing in for ``socketserver``, ``mock.patch`` by name patches sockserve."""
    monkeypatch.setitem(sys.modules, "socketserver", sockserve)
    seen: list[str] = []
    recording = _recording_selector(sockserve, seen)
    with (
        mock.patch("socketserver._ServerSelector", recording),
        sockserve.TCPServer(LOCALHOST, echo_handler(sockserve)) as server,
        serving(server),
    ):
        assert round_trip(server.server_address) == b"ping\n"
    assert "test-serve" in seen
    assert sockserve._ServerSelector is sockserve.servers._Selector  # restored


def test_the_threads_record_counts_and_joins_request_threads(mod: ModuleType) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    class Held(mod.StreamRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            started.release()
            release.wait(TIMEOUT)
            self.wfile.write(b"done\n")

    with mod.ThreadingTCPServer(LOCALHOST, Held) as server, serving(server):
        clients = [
            socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(2)
        ]
        try:
            assert all(started.acquire(timeout=TIMEOUT) for _ in clients)
            threads = server._threads
            assert isinstance(threads, list) and type(threads).__name__ == "_Threads"
            assert len(threads) == 2 and all(t.is_alive() for t in threads)
            release.set()
            for client in clients:
                assert client.recv(4096) == b"done\n"
            for thread in list(threads):
                thread.join(TIMEOUT)
            threads.reap()
            assert len(threads) == 0
            assert threads.pop_all() == []
        finally:
            release.set()
            for client in clients:
                client.close()


@pytest.mark.parametrize("setting", ["daemon_threads", "no_block_on_close"])
def test_threads_not_to_be_joined_are_not_recorded(mod: ModuleType, setting: str) -> None:
    class Server(mod.ThreadingTCPServer):  # type: ignore[name-defined,misc]
        daemon_threads = setting == "daemon_threads"
        block_on_close = setting != "no_block_on_close"

    with Server(LOCALHOST, echo_handler(mod)) as server:
        with serving(server):
            assert round_trip(server.server_address) == b"ping\n"
        if setting == "no_block_on_close":
            assert type(server._threads).__name__ == "_NoThreads"  # a no-op record
        else:
            assert type(server._threads).__name__ == "_Threads"
            assert len(server._threads) == 0  # daemon threads are never joined
