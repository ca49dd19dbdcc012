"""``--check-config``: load the target as a worker would, in a short-lived child process.

The master never imports the target (workers do, after the fork, so a reload
serves fresh code). Yet some settings can only be judged against it: a
synchronous handler with ``--worker-class async``, an async handler with an
explicit ``--worker-class pool``, a stream handler on a ``udp://`` listener.
So ``--check-config`` forks a child that imports the target and runs the same
checks a worker runs when it builds its servers, reports the verdict over a
pipe and exits; the checking process stays as clean as the master.
"""

from __future__ import annotations

import json
import os
from typing import Any

from sockserve.core.addresses import Transport, parse_bind_spec
from sockserve.exitcodes import ExitCode
from sockserve.runner.build import effective_worker_class
from sockserve.runner.loader import TargetError, load_target
from sockserve.runner.settings import RunConfig

__all__ = ["probe_target"]


def probe_target(config: RunConfig) -> str:
    """The worker class the run would serve streams with; ``TargetError`` if it cannot run."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        payload = json.dumps(_verdict(config)).encode()
        try:
            os.write(write_fd, payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _pid, status = os.waitpid(pid, 0)
    try:
        verdict: dict[str, Any] = json.loads(b"".join(chunks))
    except ValueError:
        raise TargetError(
            f"checking the target failed: the child process ended with status "
            f"{os.waitstatus_to_exitcode(status)} and no verdict",
            ExitCode.FAILURE,
        ) from None
    if "error" in verdict:
        raise TargetError(verdict["error"], ExitCode(verdict["code"]))
    return str(verdict["worker_class"])


def _verdict(config: RunConfig) -> dict[str, Any]:
    """In the child: load the target and check it against every listener's kind."""
    try:
        target = load_target(config.target)
        worker_class = config.worker_class
        kinds = {_is_datagram(spec) for spec in config.bind} or {False}
        if target.kind in ("handler", "service"):
            asynchronous = worker_class == "async"
            for datagram in sorted(kinds):
                handler = target.handler_for(datagram, asynchronous=asynchronous)
                chosen = effective_worker_class(config, handler, datagram)
                if not datagram:
                    worker_class = chosen
        return {"worker_class": worker_class}
    except TargetError as exc:
        return {"error": str(exc), "code": int(exc.exit_code)}
    except BaseException as exc:  # nothing may unwind in a forked child
        return {"error": f"{type(exc).__name__}: {exc}", "code": int(ExitCode.FAILURE)}


def _is_datagram(spec: str) -> bool:
    return parse_bind_spec(spec).transport is Transport.UDP
