"""Signals turned into events the main loop acts on.

A Python signal handler runs between two bytecodes of the main thread, where
taking a lock (``Event.set``, logging) can deadlock with the code it
interrupted. So the handlers here only append the signal to a list; the
interpreter also writes each signal to a socket pair (``signal.set_wakeup_fd``),
which is what ends :meth:`SignalInbox.wait`, and what a master's ``select``
can watch. Other threads wake the waiter with :meth:`SignalInbox.wake`.
"""

from __future__ import annotations

import selectors
import signal
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any, Self

from sockserve.core.wakeup import Waker

__all__ = ["SUPERVISOR_SIGNALS", "SignalInbox"]

#: What the master handles: stop (TERM, INT), stop now (QUIT), reload (HUP),
#: one worker more or less (TTIN, TTOU), a worker exited (CHLD), reopen the
#: log files (USR1). The master blocks them across fork; a worker unblocks
#: them once its handlers are in (USR1's default action would kill it).
SUPERVISOR_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
    signal.SIGUSR1,
)


class SignalInbox:
    """Records ``signals`` while entered (in the main thread); ``wait`` for the next one."""

    def __init__(self, signals: Sequence[int]) -> None:
        self.signals = tuple(signal.Signals(s) for s in signals)
        #: Signals received and not yet taken with :meth:`take`, in order.
        self.received: list[signal.Signals] = []
        self._waker = Waker()
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self._previous_wakeup_fd = -1

    def __enter__(self) -> Self:
        self._previous_wakeup_fd = signal.set_wakeup_fd(
            self._waker.write_fileno(), warn_on_full_buffer=False
        )
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        self.close()

    def close(self) -> None:
        """Close the socket pair (a forked child that does not use the inbox calls this)."""
        self._waker.close()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum))

    def take(self) -> list[signal.Signals]:
        """The signals received since the last call, oldest first."""
        taken, self.received[:] = self.received[:], []
        return taken

    def fileno(self) -> int:
        """Readable after a signal or a wake (for a caller's own selector)."""
        return self._waker.fileno()

    def wake(self) -> None:
        """End the current or next :meth:`wait` (from any thread)."""
        self._waker.wake()

    def drain(self) -> None:
        """Consume pending wake-ups."""
        self._waker.drain()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a signal, a :meth:`wake` or ``timeout``; the caller checks ``received``."""
        if self.received:
            return
        with selectors.DefaultSelector() as selector:
            selector.register(self._waker, selectors.EVENT_READ)
            selector.select(timeout)
        self.drain()
