"""Enough file descriptors for ``max_connections``: checked once at start-up, raised, or warned.

Every connection costs a descriptor (measured: one per connection for the
pool, thread, inline and fork strategies, and for the async one under
asyncio and uvloop alike; a strategy that needs more says so with a
``descriptors_per_connection`` attribute). With the common soft limit of
1024, a pool server's default ``max_connections=4096`` cannot be reached:
accept() fails with EMFILE long before, and the server backs off with
clients waiting in the backlog. That is safe, but nobody asked for it, and
the log says only "EMFILE".

So when a server starts serving (and the runner's master, before it forks
its workers), the soft ``RLIMIT_NOFILE`` is compared with what
``max_connections`` needs: ``connections x descriptors per connection +
MARGIN``. If it is lower, it is raised, up to the hard limit (any process
may do that; only as far as needed, since a program that still uses
``select()`` breaks on descriptors above 1023). If that is still short, one
WARNING gives the numbers and what to change.

A check answers every later one that needs no more descriptors: a worker
forked by a master that checked the sum of its servers' needs stays quiet.
"""

from __future__ import annotations

import logging
import resource
import threading

__all__ = ["MARGIN", "PER_CONNECTION", "descriptors_needed", "ensure_descriptors"]

#: Descriptors besides the connections: listeners, the wake-up socket pair,
#: selectors and event loops, log files, standard streams, pipes to the
#: master, whatever the program and its imports hold.
MARGIN = 64
#: Descriptors a connection costs, unless its strategy says otherwise.
PER_CONNECTION = 1

_checked_up_to = 0
_lock = threading.Lock()


def descriptors_needed(connections: int, per_connection: int = PER_CONNECTION) -> int:
    """The soft limit ``connections`` need (with the margin for everything else)."""
    return connections * per_connection + MARGIN


def ensure_descriptors(
    max_connections: int,
    per_connection: int = PER_CONNECTION,
    *,
    where: str,
    logger: logging.Logger,
) -> bool:
    """Raise the soft RLIMIT_NOFILE to what ``max_connections`` need, up to the hard limit.

    Returns whether the limit is now enough. Logs an INFO line when it raised
    the limit, and a WARNING with the numbers when it could not raise it far
    enough. Does nothing when a check in this process (or the parent it was
    forked from) already covered ``needed``.
    """
    global _checked_up_to
    needed = descriptors_needed(max_connections, per_connection)
    with _lock:
        if needed <= _checked_up_to:
            return True
        _checked_up_to = needed
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= needed:
            return True
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (OSError, ValueError):
                target = soft  # not allowed after all (a sandbox): warn below
            else:
                logger.info(
                    "%s: raised the soft limit on open files from %d to %d for max_connections=%d",
                    where,
                    soft,
                    target,
                    max_connections,
                )
        if target >= needed:
            return True
        logger.warning(
            "%s: max_connections=%d needs about %d open files, but the limit is %d "
            "(hard limit %s): beyond about %d connections accept() fails with EMFILE and "
            "clients wait in the backlog. Raise the limit (ulimit -n %d before starting; "
            "LimitNOFILE=%d in a systemd unit) or lower max_connections",
            where,
            max_connections,
            needed,
            target,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            max(0, target - MARGIN) // per_connection,
            needed,
            needed,
        )
        return False
