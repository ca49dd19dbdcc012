"""A worker process: serve the shared listeners until told to stop, prove progress meanwhile.

The master forks a worker and calls :func:`run_worker` in the child. The
worker loads the target (after the fork, so a reload imports fresh code),
builds one server per listener, runs each ``serve_forever`` in a thread and
reports to the master over a pipe: ``R`` once it serves (followed by
``key=value`` words saying what serves, for the master's start-up line, and a
newline), then ``.`` as a heartbeat while every serving loop keeps turning
(their ``service_actions`` stamp the time). A loop stuck behind a handler
stops the heartbeat, and the master replaces the worker.

Signals (from the master): SIGTERM drains within the grace period, a second
SIGTERM or SIGQUIT aborts what is left; SIGUSR1 reopens the log files
(the master forwards logrotate's); SIGINT is ignored (Ctrl-C reaches the
whole process group, and the master decides).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import NoReturn

from sockserve.exitcodes import ExitCode
from sockserve.observability.logs import describe_address
from sockserve.runner.build import build_server, worker_class_of
from sockserve.runner.listeners import Listener
from sockserve.runner.loader import TargetError, load_target
from sockserve.runner.logsetup import reopen_logs
from sockserve.runner.privileges import drop_privileges, resolve_identity
from sockserve.runner.reloader import SourceWatcher
from sockserve.runner.settings import RunConfig
from sockserve.runner.signals import SUPERVISOR_SIGNALS, SignalInbox
from sockserve.runner.slots import Slot
from sockserve.runner.tls import context_from_config, serves_tls
from sockserve.servers import BaseServer

__all__ = [
    "MSG_HEARTBEAT",
    "MSG_READY",
    "WorkerLoop",
    "build_servers",
    "parse_ready",
    "ready_message",
    "run_worker",
    "server_details",
]

log = logging.getLogger("sockserve.worker")

MSG_READY = b"R"
MSG_HEARTBEAT = b"."


class WorkerLoop:
    """Serve servers in threads, heartbeat, and stop gracefully when a signal arrives.

    The first signal in ``inbox`` starts a drain of every server with one
    deadline (SIGQUIT aborts at once); any further signal aborts the drain.
    """

    def __init__(
        self,
        servers: list[BaseServer],
        inbox: SignalInbox,
        *,
        grace: float,
        heartbeat: Callable[[], None] = lambda: None,
        heartbeat_interval: float = 1.0,
        max_requests: int = 0,
        repeat_forces: bool = True,
        parent_pid: int | None = None,
        on_stop: Callable[[], None] = lambda: None,
        on_reload: Callable[[], None] | None = None,
        watch: Callable[[], str | None] | None = None,
        on_tick: Callable[[], None] = lambda: None,
        shutdown_delay: float = 0.0,
    ) -> None:
        self.servers = servers
        self.inbox = inbox
        self.grace = grace
        self._heartbeat = heartbeat
        self._interval = heartbeat_interval
        self._max_requests = max_requests
        #: Whether a second stop signal aborts the drain. A worker says no: its
        #: master escalates with SIGQUIT, and a SIGTERM sent to the whole process
        #: group (systemd, kill -TERM -PGID) reaches it twice.
        self._repeat_forces = repeat_forces
        self._parent_pid = parent_pid
        self._progress = [time.monotonic()] * len(servers)
        self._failed: list[BaseServer] = []
        self._budget_spent = False
        self._on_stop = on_stop
        self._on_reload = on_reload
        #: --reload: names a changed source file, if one has changed.
        self._watch = watch
        #: Called at every turn of the loop and of a drain, and once after (metrics publish).
        self._on_tick = on_tick
        #: Seconds a first stop signal keeps serving before the drain (--workers 0:
        #: a worker's master waits instead, before it signals).
        self._shutdown_delay = shutdown_delay
        #: Set at the first stop signal (the shutdown delay, then the drain): what an
        #: in-process /healthz reports as 503.
        self.stopping = False

    def _stamp_progress(self, index: int, server: BaseServer) -> None:
        def stamp() -> None:
            self._progress[index] = time.monotonic()

        server.add_turn_callback(stamp)

    def _limit_requests(self, server: BaseServer) -> None:
        """Stop accepting on ``server`` once the worker's request budget is spent.

        Checked in the accept loop itself (a read of one counter per
        iteration), so a budget of 20 recycles after 20 connections, not
        after whatever arrived before the next heartbeat.
        """
        budget = self._max_requests

        def within_budget() -> bool:
            if self._budget_spent or self._served() >= budget:
                if not self._budget_spent:
                    self._budget_spent = True
                    self.inbox.wake()
                return False
            return True

        server.add_accept_gate(within_budget)

    def _serve(self, server: BaseServer, poll: float) -> None:
        try:
            server.serve_forever(poll_interval=poll)
        except BaseException:
            log.exception("serving %s failed", describe_address(server.server_address))
            self._failed.append(server)
        finally:
            self.inbox.wake()

    def run(self) -> str:
        """Serve until a signal, a failure or the request budget; drain; return why it ended.

        The reason is ``"signal"``, ``"recycle"``, ``"orphaned"``, ``"reload"`` (a
        source file changed, with ``--reload``) or ``"failure"``.
        """
        poll = min(1.0, self._interval)
        for index, server in enumerate(self.servers):
            self._stamp_progress(index, server)
            if self._max_requests:
                self._limit_requests(server)
            threading.Thread(
                target=self._serve,
                args=(server, poll),
                name=f"sockserve-serve-{index}",
                daemon=True,
            ).start()
        reason = ""
        drain_at: float | None = None
        while not reason:
            wait = self._interval
            if drain_at is not None:
                wait = max(0.0, min(wait, drain_at - time.monotonic()))
            self.inbox.wait(wait)
            self._on_tick()
            received = self._take()
            if signal.SIGHUP in received:
                self._reload()
                received = [signum for signum in received if signum != signal.SIGHUP]
            if received:
                self.stopping = True
            if (
                received
                and drain_at is None
                and self._shutdown_delay > 0
                and (signal.SIGQUIT not in received)
            ):
                drain_at = time.monotonic() + self._shutdown_delay
                log.info(
                    "received %s: draining in %.1f s (a second signal drains now)",
                    received[0].name,
                    self._shutdown_delay,
                )
            elif received:
                log.info("received %s: stopping", received[0].name)
                reason = "signal"
                if signal.SIGQUIT in received:
                    self._force()
            elif drain_at is not None and time.monotonic() >= drain_at:
                log.info("shutdown delay over: stopping")
                reason = "signal"
            elif self._failed:
                reason = "failure"
            else:
                stale = time.monotonic() - 2 * self._interval - 1.0
                if all(stamp > stale for stamp in self._progress):
                    self._heartbeat()
                if self._budget_spent:
                    log.info("served %d connections: recycling this worker", self._served())
                    reason = "recycle"
                elif self._parent_pid is not None and os.getppid() != self._parent_pid:
                    log.warning("the master (pid %d) is gone: stopping", self._parent_pid)
                    reason = "orphaned"
                elif self._watch is not None and (changed := self._watch()) is not None:
                    log.info("%s changed: restarting this worker (--reload)", changed)
                    reason = "reload"
        self.stopping = True
        self._on_stop()
        self._drain()
        self._on_tick()
        return reason

    def _take(self) -> list[signal.Signals]:
        """The signals received, but SIGUSR1: that one reopens the log files, here and now."""
        received = self.inbox.take()
        if signal.SIGUSR1 in received:
            reopen_logs(log)
            received = [signum for signum in received if signum != signal.SIGUSR1]
        return received

    def _reload(self) -> None:
        """SIGHUP in process (``--workers 0``): what can change without new workers does."""
        if self._on_reload is None:
            log.warning("SIGHUP: reloading needs worker processes (--workers 1 or more)")
            return
        try:
            self._on_reload()
        except Exception as exc:  # a bad reload keeps what serves now
            log.error("SIGHUP: reload failed, keeping the current settings: %s", exc)

    def _served(self) -> int:
        return sum(server.connections_admitted for server in self.servers)

    def _force(self) -> None:
        for server in self.servers:
            server.force_drain()

    def _drain(self) -> None:
        """Drain every server at once, sharing one deadline; a further signal aborts."""
        draining = [s for s in self.servers if s.state.value in ("idle", "serving")]
        finished = [threading.Event() for _server in draining]
        for server, done in zip(draining, finished, strict=True):
            threading.Thread(target=self._drain_one, args=(server, done), daemon=True).start()
        in_flight = sum(server.stats().active for server in self.servers)
        if in_flight and self._repeat_forces:  # a terminal's Ctrl-C: say what we wait for
            log.info(
                "waiting up to %g s (--grace) for %d connection(s) in flight; "
                "Ctrl-C again to stop at once",
                self.grace,
                in_flight,
            )
        while not all(done.is_set() for done in finished):
            self.inbox.wait(0.2)
            self._on_tick()  # the drain is visible while it lasts (metrics' draining gauge)
            if self._take() and self._repeat_forces:
                log.warning("second signal: aborting the drain")
                self._force()
        for server in self.servers:
            server.server_close()

    def _drain_one(self, server: BaseServer, done: threading.Event) -> None:
        try:
            server.drain(self.grace)
        finally:
            # Wake the loop at once (the event first: a thread still alive after
            # its wake-up would look unfinished): a recycled worker's replacement,
            # and a stop, wait for this process to exit.
            done.set()
            self.inbox.wake()


def run_worker(
    config: RunConfig,
    listeners: list[Listener],
    status_fd: int,
    *,
    index: int,
    metrics_slot: Slot | None = None,
) -> NoReturn:
    """The body of a worker process (never returns).

    ``metrics_slot``: the shared memory its numbers go to (``--metrics-bind``).
    """
    code = ExitCode.OK
    try:
        code = _serve(config, listeners, status_fd, index, metrics_slot)
    except BaseException as exc:  # nothing may unwind into the master's code after fork
        say(f"sockserve: worker error: {type(exc).__name__}: {exc}")
        code = ExitCode.FAILURE
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _serve(
    config: RunConfig,
    listeners: list[Listener],
    status_fd: int,
    index: int,
    slot: Slot | None = None,
) -> ExitCode:
    signal.signal(signal.SIGQUIT, lambda signum, frame: os._exit(ExitCode.OK))
    for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(ignored, signal.SIG_IGN)
    set_process_title(f"sockserve: worker {index} [{config.target}]")
    with SignalInbox([signal.SIGTERM, signal.SIGUSR1]) as inbox:
        # The master blocked these around the fork; our handlers are in place now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)
        try:
            servers = build_servers(config, listeners)  # with --reuse-port: our slot's
        except TargetError as exc:
            say(f"sockserve: error: {exc}")
            return exc.exit_code
        except OSError as exc:
            say(f"sockserve: error: worker {index} could not listen: {exc}")
            return ExitCode.BIND
        budget = config.max_requests
        if budget and config.max_requests_jitter:
            budget += random.randint(0, config.max_requests_jitter)
        interval = 1.0 if config.worker_timeout is None else min(1.0, config.worker_timeout / 4)
        publish: Callable[[], None] = _nothing
        if slot is not None:
            slot.attach(servers)
            publish = partial(slot.publish, servers)
        loop = WorkerLoop(
            servers,
            inbox,
            grace=config.grace,
            heartbeat=lambda: _send(status_fd, MSG_HEARTBEAT),
            heartbeat_interval=interval,
            max_requests=budget,
            repeat_forces=False,
            parent_pid=os.getppid(),
            watch=SourceWatcher().changed if config.reload else None,
            on_tick=publish,
        )
        _send(status_fd, ready_message(server_details(servers)))
        reason = loop.run()
    return ExitCode.FAILURE if reason == "failure" else ExitCode.OK


def _nothing() -> None:
    pass


def build_servers(
    config: RunConfig, listeners: list[Listener], *, fresh_sockets: bool = False
) -> list[BaseServer]:
    """Load the target and build one server per listener (TargetError if it cannot be).

    The TLS files are read first, then the process becomes ``--user``/``--group``
    (:mod:`sockserve.runner.privileges`), then the target is imported: a key
    readable by root alone works, and no code of the target runs as root.
    """
    try:
        context = context_from_config(config)  # each worker reads the files: reloads rotate
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot serve TLS: {exc}", ExitCode.USAGE) from None
    try:
        drop_privileges(resolve_identity(config.user, config.group))
    except (OSError, ValueError) as exc:
        raise TargetError(
            f"cannot become user {config.user!r} / group {config.group!r}: {exc}",
            ExitCode.WORKER_BOOT,
        ) from None
    target = load_target(config.target)
    servers = []
    try:
        for listener in listeners:
            sock = listener.sock
            if fresh_sockets:
                sock = listener.fresh_reuse_port_socket(backlog=config.backlog)
            tls = context if serves_tls(listener.spec, config) else None
            servers.append(build_server(target, sock, config, tls=tls, address=listener.address))
    except BaseException:
        for server in servers:
            server.server_close()
        raise
    return servers


def server_details(servers: list[BaseServer]) -> dict[str, str]:
    """What serves, for the start-up line: the worker class(es) and the event loop really used."""
    classes = dict.fromkeys(worker_class_of(server) for server in servers)
    loops = dict.fromkeys(
        str(server.event_loop_kind) for server in servers if hasattr(server, "event_loop_kind")
    )
    return {
        "worker_class": ",".join(classes) or "none",
        "event_loop": ",".join(loops) or "none",
    }


def ready_message(details: Mapping[str, str]) -> bytes:
    """``R`` and ``key=value`` words, one line (well under PIPE_BUF: one atomic write)."""
    words = " ".join(f"{key}={value.replace(' ', '_')}" for key, value in details.items())
    return MSG_READY + words.encode("utf-8", "backslashreplace")[:512] + b"\n"


def parse_ready(data: bytes) -> dict[str, str]:
    """The ``key=value`` words of the ready message at the start of ``data`` (else none)."""
    if not data.startswith(MSG_READY):
        return {}
    line = data[len(MSG_READY) :].partition(b"\n")[0].decode("utf-8", "replace")
    details = {}
    for word in line.split():
        key, equals, value = word.partition("=")
        if equals:
            details[key] = value
    return details


def say(line: str) -> None:
    """Write one whole line to stderr in a single write(), so lines of processes do not mix."""
    sys.stderr.flush()
    os.write(2, (line + "\n").encode("utf-8", "backslashreplace"))


def _send(fd: int, message: bytes) -> None:
    try:
        os.write(fd, message)
    except (BlockingIOError, BrokenPipeError):
        pass  # the master is gone or busy; it judges us by what it does read


def set_process_title(title: str) -> None:
    """Show ``title`` in ps/top where cheap: setproctitle if installed, else the comm name."""
    try:
        # An optional extra, imported only if present.
        import setproctitle  # noqa: PLC0415

        setproctitle.setproctitle(title)
        return
    except ImportError:
        pass
    try:
        with open(f"/proc/{os.getpid()}/comm", "w") as comm:
            comm.write(title.replace("sockserve: ", "sockserve-")[:15])
    except OSError:
        pass  # not Linux, or not allowed: the title is a nicety
