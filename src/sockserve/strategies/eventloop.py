"""An asyncio event loop on a thread of its own, fed connections from the accept loop.

The async strategy keeps sockserve's serving loop (accepting, limits,
back-pressure, drain, stats) exactly as the other strategies have it and
hands each admitted connection to this loop, the way the pool hands one to a
worker thread. One thread then serves any number of connections, which is
what many mostly idle clients need.

uvloop is used when it is installed (``kind="auto"``), or demanded
(``kind="uvloop"``); the standard library's loop otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["EVENT_LOOP_KINDS", "EventLoopThread", "loop_factory"]

_log = logging.getLogger("sockserve.server")

#: Seconds tasks cancelled when the loop stops get to finish their clean-up.
CANCEL_GRACE = 1.0

#: What ``event_loop`` may say: "auto" picks uvloop when it is installed.
EVENT_LOOP_KINDS = ("auto", "asyncio", "uvloop")


def loop_factory(kind: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """(the kind really used, a function making such a loop); ValueError if impossible."""
    if kind not in EVENT_LOOP_KINDS:
        raise ValueError(f"event_loop must be one of {EVENT_LOOP_KINDS}, got {kind!r}")
    if kind in ("auto", "uvloop"):
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if kind == "uvloop":
                raise ValueError(
                    "event_loop='uvloop' but uvloop is not installed "
                    "(pip install 'sockserve[uvloop]')"
                ) from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


class EventLoopThread:
    """Runs coroutines submitted from other threads on one event loop thread."""

    def __init__(self, name: str, kind: str = "auto") -> None:
        self.kind, self._new_loop = loop_factory(kind)
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        #: Set when the loop has stopped (or given up on tasks that ignore cancellation).
        self._stopped = threading.Event()
        self._start_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, coroutine_function: Callable[..., Coroutine[Any, Any, None]], *args: Any
    ) -> None:
        """Run ``coroutine_function(*args)`` as a task on the loop (started on first use)."""
        loop = self._loop if self._loop is not None else self._start()
        loop.call_soon_threadsafe(self._spawn, coroutine_function, args)

    def _spawn(
        self, coroutine_function: Callable[..., Coroutine[Any, Any, None]], args: tuple[Any, ...]
    ) -> None:
        task = asyncio.get_running_loop().create_task(coroutine_function(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._ready.wait()
        assert self._loop is not None
        return self._loop

    def _run(self) -> None:
        loop = self._new_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
            # Stopped: whatever still runs is cancelled and given a moment to
            # clean up; a task that ignores its cancellation is left behind
            # (the thread must end: server_close() may be waiting for it).
            leftovers = [task for task in self._tasks if not task.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.wait(leftovers, timeout=CANCEL_GRACE))
                stuck = [task for task in leftovers if not task.done()]
                if stuck:
                    # Let stop() return; the loop keeps running on this daemon
                    # thread until those tasks end by themselves, so their
                    # connections are still closed properly when they do.
                    _log.warning(
                        "%s: %d task(s) ignored their cancellation; not waiting for them",
                        self._name,
                        len(stuck),
                    )
                    self._stopped.set()
                    loop.run_until_complete(asyncio.wait(stuck))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            _log.exception("%s: the event loop failed", self._name)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            self._stopped.set()

    @property
    def running_tasks(self) -> int:
        """Connections being served on the loop now (read without a lock: a snapshot)."""
        return len(self._tasks)

    def cancel_all(self) -> None:
        """Cancel every task (drain deadline): handlers see ``CancelledError``."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_all)

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop, cancelling what still runs, and wait until it has stopped.

        Tasks that ignore their cancellation are given ``CANCEL_GRACE`` seconds,
        then left to run on the loop's daemon thread until they end.
        """
        with self._start_lock:
            thread = self._thread
        if thread is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # closed meanwhile
        if thread is not threading.current_thread():
            self._stopped.wait(timeout)
