"""The supervisor: one master process that keeps N workers serving the shared listeners.

Rules of this module:

* Signal handlers only record the signal; the master loop acts on it (and
  ``signal.set_wakeup_fd`` makes the loop's ``select`` return at once).
* The master never imports the target: workers do, after the fork, so a
  reload (SIGHUP) serves freshly imported code, and a target that cannot be
  imported fails in a worker at boot. A worker that dies before it reported
  ready is a boot failure: the master stops with that worker's exit status
  instead of respawning it forever (with ``--reload``, once serving, it tries
  again every second: the next edit may fix it). ``--preload`` is the
  exception: the command imports the target before the master forks (see
  :mod:`sockserve.cli`), trading fresh code on SIGHUP for shared memory.
* Stops are staged: SIGTERM/SIGINT drain the workers within ``grace``; at the
  deadline, or on a second signal, they are aborted (SIGQUIT), then killed.

With ``--metrics-bind``, the loop also serves ``/metrics`` and ``/healthz``
(:mod:`sockserve.runner.metrics`); with ``--shutdown-delay``, a stop signal
first turns ``/healthz`` to 503 for that long while the workers keep serving.

Signals: TERM/INT graceful stop; QUIT immediate stop; HUP reload (new
workers with re-read configuration start; once all are ready the old ones
drain); TTIN/TTOU one worker more/less; USR1 reopen the log files (here,
then in every worker: what logrotate's ``postrotate`` sends).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from sockserve.exitcodes import ExitCode
from sockserve.runner import systemd
from sockserve.runner.listeners import Listener
from sockserve.runner.logsetup import LOGGING_SETTINGS, log_startup, reopen_logs
from sockserve.runner.metrics import MasterMetrics
from sockserve.runner.settings import ConfigError, RunConfig
from sockserve.runner.signals import SUPERVISOR_SIGNALS, SignalInbox
from sockserve.runner.worker import (
    MSG_HEARTBEAT,
    MSG_READY,
    parse_ready,
    run_worker,
    set_process_title,
)

__all__ = ["Master"]

log = logging.getLogger("sockserve.master")

HANDLED_SIGNALS = SUPERVISOR_SIGNALS
#: Seconds a stop waits past the grace period before killing workers.
KILL_MARGIN = 5.0
#: Seconds a worker may take to boot before it counts as failed.
BOOT_TIMEOUT = 60.0
#: Restart back-off for workers that die young: from MIN to MAX, doubling.
MIN_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0
#: With --reload, seconds before a worker that failed to boot is tried again.
RELOAD_RETRY = 1.0
#: A worker that lived longer than this resets the back-off.
HEALTHY_LIFETIME = 5.0


class Phase(Enum):
    """Where the master is; every move is in this module, by the master loop only.

    ``booting`` -> ``running`` once the first generation is ready;
    ``running`` <-> ``reloading`` for a SIGHUP (a failed reload goes back);
    any phase -> ``stopping`` (a stop signal, or a boot failure). Terminal.
    """

    BOOTING = "booting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"


@dataclass
class WorkerProcess:
    pid: int
    index: int
    generation: int
    status_fd: int
    started: float
    ready: bool = False
    last_beat: float = 0.0
    retiring: bool = False
    killed: bool = False
    #: What its ready message said serves (worker class, event loop).
    details: dict[str, str] = field(default_factory=dict)


class Master:
    """Runs the workers; :meth:`run` returns the process exit status."""

    def __init__(
        self,
        config: RunConfig,
        listeners: list[Listener],
        *,
        reload_config: Callable[[], RunConfig] | None = None,
    ) -> None:
        self.config = config
        self.listeners = listeners
        self._reload_config = reload_config
        self.workers: dict[int, WorkerProcess] = {}
        self.target_count = config.workers
        self.generation = 1
        self.phase = Phase.BOOTING
        self.exit_code = ExitCode.OK
        self._inbox = SignalInbox(HANDLED_SIGNALS)
        self._kill_at: float | None = None
        self._aborted = False
        self._restart_delay = 0.0
        self._next_spawn = 0.0
        #: With --reuse-port: per worker index, its listeners (TCP ones its own).
        self._slots: dict[int, list[Listener]] = {}
        #: Fixed at start, as the listeners are: a reload cannot change it.
        self._reuse_port = config.reuse_port
        #: When a stop signal's ``shutdown_delay`` ends and the drain begins.
        self._drain_at: float | None = None
        self.metrics = MasterMetrics(listeners, config.worker_class)

    # -- signals ------------------------------------------------------------

    def _act_on_signals(self) -> None:
        for signum in self._inbox.take():
            self._SIGNAL_ACTIONS[signum](self, signum)

    def _on_stop_signal(self, signum: signal.Signals) -> None:
        if self.phase is Phase.STOPPING:
            self._abort("second stop signal")
        elif self._drain_at is None and self.config.shutdown_delay > 0:
            # Keep serving while /healthz says 503, so balancers stop sending first.
            self._drain_at = time.monotonic() + self.config.shutdown_delay
            log.info(
                "%s: unready; draining in %.1f s (a second signal drains now)",
                signum.name,
                self.config.shutdown_delay,
            )
        else:
            self._begin_stop(
                f"{signum.name}: draining {len(self.workers)} worker(s), which finish the "
                f"connections in flight within {self.config.grace:g} s (--grace); "
                "Ctrl-C (or another SIGTERM) again stops them at once"
            )

    def _on_quit(self, signum: signal.Signals) -> None:
        # Straight to SIGQUIT: a SIGTERM first would have the workers log a
        # graceful stop ("received SIGTERM") that is not happening.
        self._begin_stop("SIGQUIT: stopping at once", drain=False)
        self._abort("SIGQUIT")

    def _on_reload(self, signum: signal.Signals) -> None:
        self._begin_reload()

    def _on_more_workers(self, signum: signal.Signals) -> None:
        self.target_count += 1
        log.info("SIGTTIN: %d worker(s) wanted", self.target_count)

    def _on_fewer_workers(self, signum: signal.Signals) -> None:
        self.target_count = max(1, self.target_count - 1)
        log.info("SIGTTOU: %d worker(s) wanted", self.target_count)

    def _on_reopen(self, signum: signal.Signals) -> None:
        reopen_logs(log)
        for worker in self.workers.values():
            self._signal(worker.pid, signal.SIGUSR1)

    def _on_child(self, signum: signal.Signals) -> None:
        """Reaped by the loop right after signals are acted on."""

    #: What each handled signal does (the handlers themselves only record it).
    _SIGNAL_ACTIONS: Mapping[int, Callable[[Master, signal.Signals], None]] = {
        signal.SIGTERM: _on_stop_signal,
        signal.SIGINT: _on_stop_signal,
        signal.SIGQUIT: _on_quit,
        signal.SIGHUP: _on_reload,
        signal.SIGTTIN: _on_more_workers,
        signal.SIGTTOU: _on_fewer_workers,
        signal.SIGCHLD: _on_child,
        signal.SIGUSR1: _on_reopen,
    }

    # -- the loop -------------------------------------------------------------

    def run(self) -> int:
        with self._inbox:
            if self.config.metrics_bind is not None:
                try:
                    bound = self.metrics.open(self.config.metrics_bind)
                except OSError as exc:
                    log.error("cannot serve metrics on %s: %s", self.config.metrics_bind, exc)
                    return int(ExitCode.BIND)
                log.info("metrics on http://%s/metrics, health on /healthz", bound)
            try:
                return self._run()
            finally:
                self.metrics.close()

    @property
    def healthy(self) -> bool:
        """What /healthz says: serving, and no stop on its way."""
        return self.phase in (Phase.RUNNING, Phase.RELOADING) and self._drain_at is None

    def _run(self) -> int:
        set_process_title(f"sockserve: master [{self.config.target}]")
        try:
            self._spawn(1)
            while True:
                self._wait_for_events(self._tick())
                self._act_on_signals()
                self._reap()
                now = time.monotonic()
                self.metrics.expire(now)
                if self._drain_at is not None and now >= self._drain_at:
                    self._begin_stop("shutdown delay over: draining workers")
                if self.phase == Phase.STOPPING:
                    if not self.workers:
                        return int(self.exit_code)
                    if self._kill_at is not None and now >= self._kill_at:
                        self._kill_all()
                    continue
                self._check_workers(now)
                self._maintain(now)
        finally:
            self._kill_all()
            self._reap_all()
            for index in list(self._slots):
                self._close_slot(index)

    def _tick(self) -> float:
        return 0.5 if self.phase != Phase.STOPPING else 0.1

    def _wait_for_events(self, timeout: float) -> None:
        by_fd = {w.status_fd: w for w in self.workers.values()}
        metrics = self.metrics
        if self._drain_at is not None:
            timeout = max(0.0, min(timeout, self._drain_at - time.monotonic()))
        try:
            readable, writable, _ = select.select(
                [self._inbox.fileno(), *by_fd, *metrics.readers()],
                metrics.writers(),
                [],
                timeout,
            )
        except InterruptedError:
            return
        for fd in writable:
            metrics.writable(fd)
        now = time.monotonic()
        for fd in readable:
            if fd == self._inbox.fileno():
                self._inbox.drain()
                continue
            if fd not in by_fd:
                metrics.readable(fd, len(self.workers), self.healthy)
                continue
            worker = by_fd[fd]
            try:
                data = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            if MSG_READY in data and not worker.ready:
                worker.ready = True
                worker.details = parse_ready(data[data.index(MSG_READY) :])
                self._worker_ready(worker)
            if data and (MSG_HEARTBEAT in data or MSG_READY in data):
                worker.last_beat = now

    # -- workers ----------------------------------------------------------------

    def _listeners_of(self, index: int) -> list[Listener]:
        """What worker ``index`` serves: the shared listeners, or its slot's (--reuse-port).

        With SO_REUSEPORT each worker index has its own listening TCP socket,
        which the master opens and keeps: when the worker is recycled
        (--max-requests), killed or reloaded, the socket stays open here, so the
        connections the kernel queued on it, and those it queues meanwhile,
        wait for the replacement instead of being reset (closing the last
        descriptor of a reuse-port listener drops its queue, and with a single
        worker nothing would listen at all). Datagram and Unix listeners
        cannot be spread that way: they are shared, as without --reuse-port.
        """
        if not self._reuse_port:
            return self.listeners
        slot = self._slots.get(index)
        if slot is None:
            slot = [
                replace(shared, sock=shared.fresh_reuse_port_socket(backlog=self.config.backlog))
                if _spreadable(shared)
                else shared
                for shared in self.listeners
            ]
            self._slots[index] = slot
        return slot

    def _close_slot(self, index: int) -> None:
        """Close the sockets of a worker index nobody will serve again."""
        for listener in self._slots.pop(index, []):
            if _spreadable(listener):
                listener.sock.close()

    def _close_idle_slots(self) -> None:
        """Close the slots no live worker holds and :meth:`_maintain` will not fill again.

        A slot whose worker is gone but will be replaced (a recycle, a crash)
        stays open: its queue is the point. One left over after SIGTTOU or a
        reload to fewer workers is closed, or the kernel would keep handing it
        connections nobody accepts.
        """
        keep = {w.index for w in self.workers.values()}
        wanted = {w.index for w in self._current_workers()}
        for index in range(1, self.target_count + 1):  # what _maintain spawns next
            if len(wanted) >= self.target_count:
                break
            wanted.add(index)
        for index in list(self._slots):
            if index not in keep | wanted:
                self._close_slot(index)

    def _spawn(self, index: int) -> None:
        try:
            listeners = self._listeners_of(index)
        except OSError as exc:
            log.error("cannot open a listening socket for worker %d: %s", index, exc)
            self.exit_code = ExitCode.BIND
            self._begin_stop("no listening socket")
            return
        slot = self.metrics.new_slot()
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals stay blocked across the fork until the worker has its own
        # handlers (run_worker unblocks them): a SIGTERM in between is then a
        # graceful stop, not a death by the default action.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        pid = os.fork()
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if pid == 0:  # the child: become a worker and never return here
            os.close(read_fd)
            signal.set_wakeup_fd(-1)
            for other in self.workers.values():
                os.close(other.status_fd)
            for slot_index in [i for i in self._slots if i != index]:
                self._close_slot(slot_index)  # another worker's queue is not ours to hold
            self._inbox.close()
            for signum in HANDLED_SIGNALS:  # the worker installs what it needs
                signal.signal(signum, signal.SIG_DFL)
            self.metrics.in_child(slot)
            run_worker(self.config, listeners, write_fd, index=index, metrics_slot=slot)
        os.close(write_fd)
        self.metrics.worker_started(pid, slot)
        os.set_blocking(read_fd, False)
        now = time.monotonic()
        self.workers[pid] = WorkerProcess(pid, index, self.generation, read_fd, now, last_beat=now)
        log.info("worker %d started (pid %d)", index, pid)

    def _worker_ready(self, worker: WorkerProcess) -> None:
        log.debug("worker %d (pid %d) ready", worker.index, worker.pid)
        current = self._current_workers()
        if self.phase == Phase.BOOTING and len(current) == 1:
            # The first worker proved the target loads: start the others together.
            for index in range(2, self.target_count + 1):
                self._spawn(index)
        current = self._current_workers()
        if (
            self.phase in (Phase.BOOTING, Phase.RELOADING)
            and len(current) >= self.target_count
            and all(w.ready for w in current)
        ):
            self._all_ready()

    def _all_ready(self) -> None:
        if self.phase == Phase.RELOADING:
            old = [w for w in self.workers.values() if w.generation < self.generation]
            for worker in old:
                self._retire(worker)
            log.info(
                "reload complete: %d new worker(s), %d old draining", self.target_count, len(old)
            )
            self.metrics.reloads["ok"] += 1
        else:
            log_startup(log, self.config, self.listeners, self._current_workers()[0].details)
            for listener in self.listeners:
                log.info("%s listening on %s", self.config.target, listener.spec)
            log.info("master pid %d serving with %d worker(s)", os.getpid(), self.target_count)
        self.phase = Phase.RUNNING
        systemd.notify(
            f"READY=1\nSTATUS=serving with {self.target_count} worker(s)\nMAINPID={os.getpid()}"
        )

    def _current_workers(self) -> list[WorkerProcess]:
        return [
            w for w in self.workers.values() if w.generation == self.generation and not w.retiring
        ]

    def _retire(self, worker: WorkerProcess) -> None:
        """Ask a worker to drain and exit (it is not replaced)."""
        worker.retiring = True
        self._signal(worker.pid, signal.SIGTERM)

    def _check_workers(self, now: float) -> None:
        timeout = self.config.worker_timeout
        for worker in list(self.workers.values()):
            if worker.killed:
                continue  # SIGKILLed already: waiting to be reaped
            if not worker.ready and now - worker.started > BOOT_TIMEOUT:
                log.error(
                    "worker %d (pid %d) did not boot in %.0f s",
                    worker.index,
                    worker.pid,
                    BOOT_TIMEOUT,
                )
                worker.killed = True
                self._signal(worker.pid, signal.SIGKILL)
            elif (
                worker.ready
                and timeout
                and not worker.retiring
                and now - worker.last_beat > timeout
            ):
                log.error(
                    "worker %d (pid %d) made no progress for %.1f s: killing it",
                    worker.index,
                    worker.pid,
                    now - worker.last_beat,
                )
                worker.killed = True
                self._signal(worker.pid, signal.SIGKILL)

    def _maintain(self, now: float) -> None:
        """Keep the current generation at the wanted size (not while booting)."""
        if self.phase != Phase.RUNNING:
            return
        current = sorted(self._current_workers(), key=lambda w: w.index)
        for worker in current[self.target_count :]:  # the highest indices go
            self._retire(worker)
        if len(current) < self.target_count and now >= self._next_spawn:
            used = {w.index for w in current}
            for index in range(1, self.target_count + 1):
                if len(used) >= self.target_count:
                    break
                if index not in used:
                    used.add(index)
                    self._spawn(index)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.status_fd)
            self._close_idle_slots()  # before the log line that says it is gone
            self.metrics.worker_gone(pid)
            self._worker_exited(worker, os.waitstatus_to_exitcode(status))

    def _worker_exited(self, worker: WorkerProcess, code: int) -> None:
        how = f"exit status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if self.phase == Phase.STOPPING or worker.retiring:
            log.info("worker %d (pid %d) stopped (%s)", worker.index, worker.pid, how)
            return
        if not worker.ready:
            self.metrics.boot_failures += 1
            if self.phase == Phase.RELOADING and worker.generation == self.generation:
                log.error(
                    "reload failed: a new worker did not boot (%s); keeping the old ones", how
                )
                self._abort_reload()
                return
            if self.config.reload and self.phase == Phase.RUNNING:
                # --reload: an edit that does not import yet; the next one may.
                log.error(
                    "worker %d failed to boot (%s): --reload tries again in %.0f s",
                    worker.index, how, RELOAD_RETRY,
                )  # fmt: skip
                self._next_spawn = time.monotonic() + RELOAD_RETRY
                return
            self.exit_code = _boot_failure_code(code)
            log.error(
                "worker %d failed to boot (%s): stopping instead of respawning", worker.index, how
            )
            self._begin_stop("boot failure")
            return
        lived = time.monotonic() - worker.started
        self.metrics.restarts[_restart_cause(worker, code)] += 1
        level = logging.INFO if code == 0 else logging.WARNING
        log.log(
            level,
            "worker %d (pid %d) exited (%s) after %.1f s; replacing it",
            worker.index,
            worker.pid,
            how,
            lived,
        )
        if lived < HEALTHY_LIFETIME and code != 0:
            self._restart_delay = min(
                MAX_RESTART_DELAY, max(MIN_RESTART_DELAY, self._restart_delay * 2)
            )
        else:
            self._restart_delay = 0.0
        self._next_spawn = time.monotonic() + self._restart_delay

    # -- reload and stop ----------------------------------------------------------

    def _begin_reload(self) -> None:
        if self.phase != Phase.RUNNING:
            log.warning("SIGHUP ignored while %s", self.phase.value)
            return
        systemd.notify(systemd.reloading_message())
        if self._reload_config is not None:
            try:
                new = self._reload_config()
            except ConfigError as exc:
                log.error("reload: configuration rejected, keeping the current one: %s", exc)
                self.metrics.reloads["failed"] += 1
                systemd.notify("READY=1")
                return
            if new.bind != self.config.bind or new.reuse_port != self.config.reuse_port:
                log.warning("reload: bind addresses change only with a restart; keeping them")
            logging_changed = [k for k in LOGGING_SETTINGS if new.value(k) != self.config.value(k)]
            if logging_changed:
                log.warning(
                    "reload: %s change only with a restart; keeping them",
                    ", ".join(logging_changed),
                )
            if new.metrics_bind != self.config.metrics_bind:
                log.warning("reload: metrics_bind changes only with a restart; keeping it")
            self.config = new
            self.target_count = new.workers
        log.info("SIGHUP: reloading with %d new worker(s)", self.target_count)
        if self.config.preload:
            log.warning("SIGHUP: with --preload the target's code stays the one loaded at start")
        self.phase = Phase.RELOADING
        self.generation += 1
        for index in range(1, self.target_count + 1):
            self._spawn(index)

    def _abort_reload(self) -> None:
        self.metrics.reloads["failed"] += 1
        for worker in [w for w in self.workers.values() if w.generation == self.generation]:
            worker.retiring = True
            self._signal(worker.pid, signal.SIGKILL)
        self.generation -= 1
        self.phase = Phase.RUNNING
        systemd.notify("READY=1")

    def _begin_stop(self, why: str, *, drain: bool = True) -> None:
        if self.phase == Phase.STOPPING:
            return
        log.info("stopping: %s", why)
        systemd.notify("STOPPING=1")
        self.phase = Phase.STOPPING
        # Our copy of the listeners would keep the kernel queueing clients that
        # nobody will accept once the workers have drained: close it now.
        for listener in self.listeners:
            listener.sock.close()
        for index in list(self._slots):
            self._close_slot(index)
        for worker in self.workers.values():
            if drain and not worker.retiring:  # retiring ones drain already
                self._signal(worker.pid, signal.SIGTERM)
        self._kill_at = time.monotonic() + self.config.grace + KILL_MARGIN

    def _abort(self, why: str) -> None:
        """Abort the drain: workers exit at once (SIGQUIT), killed if they do not."""
        if self._aborted:
            self._kill_all()
            return
        self._aborted = True
        log.warning("%s: aborting %d worker(s)", why, len(self.workers))
        for worker in self.workers.values():
            self._signal(worker.pid, signal.SIGQUIT)
        self._kill_at = time.monotonic() + 2.0

    def _kill_all(self) -> None:
        for worker in self.workers.values():
            self._signal(worker.pid, signal.SIGKILL)

    def _reap_all(self) -> None:
        for pid, worker in list(self.workers.items()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            os.close(worker.status_fd)
            del self.workers[pid]

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _spreadable(listener: Listener) -> bool:
    """Whether SO_REUSEPORT can give each worker its own socket: TCP listeners only."""
    return listener.sock.type == socket.SOCK_STREAM and listener.sock.family in (
        socket.AF_INET,
        socket.AF_INET6,
    )


def _restart_cause(worker: WorkerProcess, code: int) -> str:
    """Why a serving worker had to be replaced, as ``sockserve_worker_restarts_total`` says."""
    if worker.killed:
        return "timeout"  # the master killed it: no progress (or no boot) in time
    if code == 0:
        return "recycled"  # it left by itself: --max-requests, or the master vanished
    return "killed" if code < 0 else "crashed"


def _boot_failure_code(code: int) -> ExitCode:
    """The master's exit status for a worker that failed to boot with ``code``."""
    try:
        known = ExitCode(code)
    except ValueError:
        return ExitCode.WORKER_BOOT
    return known if known not in (ExitCode.OK, ExitCode.FAILURE) else ExitCode.WORKER_BOOT
