"""The runner's logging: where lines go, how they look, and the line that opens a run.

Without ``--log-config`` the runner sets up the ``sockserve`` logger tree
itself, before the master forks, so workers inherit it:

* the error log (every ``sockserve`` logger) goes to ``--error-logfile``
  (a path, or ``-``: stderr, the default), at ``--log-level``;
* the access log (``sockserve.access``) goes with it, or to its own
  ``--access-logfile`` (``-``: stdout). Given its own file, it is written
  whatever ``--log-level`` says (``--no-access-log`` turns it off);
* lines are ``--log-format text`` (timestamp, pid, level, logger, message)
  or ``json`` (one object per line): :mod:`sockserve.observability.formatters`;
* files are appended to with one ``write()`` per record and reopened on
  SIGUSR1: :mod:`sockserve.observability.logfiles`.

``--log-config`` replaces all of that with the user's ``dictConfig``: the
other logging settings are then ignored, with a warning.
"""

from __future__ import annotations

import json
import logging
import logging.config
import platform
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sockserve
from sockserve.core.addresses import Transport
from sockserve.observability.formatters import JsonFormatter, TextFormatter
from sockserve.observability.logfiles import log_destination, reopen_log_files
from sockserve.runner.listeners import Listener
from sockserve.runner.settings import ConfigError, RunConfig
from sockserve.runner.tls import serves_tls

__all__ = ["LOGGING_SETTINGS", "log_startup", "reopen_logs", "run_logging", "startup_fields"]

#: Settings that only apply when the runner sets up logging itself.
_OVERRIDDEN_BY_LOG_CONFIG = ("log_level", "log_format", "access_logfile", "error_logfile")
#: Settings read once, before the first fork: a reload (SIGHUP) cannot change them.
LOGGING_SETTINGS = ("log_config", *_OVERRIDDEN_BY_LOG_CONFIG)


def _formatter(config: RunConfig) -> logging.Formatter:
    return JsonFormatter() if config.log_format == "json" else TextFormatter()


@contextmanager
def run_logging(config: RunConfig) -> Iterator[None]:
    """Set up logging for one run (as above); undo it on exit. ConfigError if a file fails."""
    if config.log_config:
        logging.config.dictConfig(_read_log_config(config.log_config))
        ignored = [key for key in _OVERRIDDEN_BY_LOG_CONFIG if key in config.sources]
        if ignored:
            logging.getLogger("sockserve.cli").warning(
                "--log-config is in charge of logging: ignoring %s", ", ".join(ignored)
            )
        yield
        return
    tree = logging.getLogger("sockserve")
    access = logging.getLogger("sockserve.access")
    saved = (tree.level, access.level, access.propagate)
    added: list[tuple[logging.Logger, logging.Handler]] = []
    try:
        error_handler = _open(config.error_logfile, sys.stderr, "error_logfile", config)
        error_handler.setFormatter(_formatter(config))
        tree.addHandler(error_handler)
        added.append((tree, error_handler))
        tree.setLevel(config.log_level.upper())
        if config.access_logfile is not None:
            access_handler = _open(config.access_logfile, sys.stdout, "access_logfile", config)
            access_handler.setFormatter(_formatter(config))
            access.addHandler(access_handler)
            added.append((access, access_handler))
            access.propagate = False
            access.setLevel(logging.INFO)
        yield
    finally:
        for logger, handler in added:
            logger.removeHandler(handler)
            handler.close()
        tree.setLevel(saved[0])
        access.setLevel(saved[1])
        access.propagate = saved[2]


def reopen_logs(logger: logging.Logger) -> None:
    """SIGUSR1: reopen this process's log files, then say so (in the new file)."""
    errors = reopen_log_files()
    for error in errors:
        logger.error("SIGUSR1: cannot reopen log file %s; writing on to the old one", error)
    logger.info("SIGUSR1: log files reopened")


def _open(target: str | None, standard: Any, key: str, config: RunConfig) -> logging.Handler:
    try:
        return log_destination(target, standard)
    except OSError as exc:
        raise ConfigError(
            f"{key} = {target!r} (from {config.source(key)}): cannot open it: {exc.strerror}"
        ) from None


def _read_log_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        data = tomllib.loads(raw.decode()) if path.endswith(".toml") else json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read log config {path!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"log config {path!r} must hold a dictConfig mapping")
    return data


# -- the start-up line ---------------------------------------------------------------


def describe_listener(listener: Listener, config: RunConfig) -> str:
    """``tcp://127.0.0.1:7000``, with what it adds in brackets: ``(tls, proxy v2)``."""
    spec = listener.spec
    extras = []
    if serves_tls(spec, config) and not spec.tls:  # tls:// says so itself
        extras.append("tls")
    proxy = config.value("proxy_protocol")
    if proxy != "off" and not listener.datagram and spec.transport is not Transport.UDP:
        extras.append(f"proxy {proxy}")
    return f"{spec} ({', '.join(extras)})" if extras else str(spec)


def startup_fields(
    config: RunConfig, listeners: Sequence[Listener], details: Mapping[str, str]
) -> dict[str, Any]:
    """What the start-up line says, by name (also the JSON keys of that record).

    ``details`` is what a worker found once it had built its servers: the
    ``worker_class`` really serving and the ``event_loop`` really running.
    """
    return {
        "version": sockserve.__version__,
        "python": platform.python_version(),
        "target": config.target,
        "worker_class": details.get("worker_class", config.worker_class),
        "event_loop": details.get("event_loop", "none"),
        "workers": config.workers,
        "listeners": [describe_listener(listener, config) for listener in listeners],
    }


def log_startup(
    logger: logging.Logger,
    config: RunConfig,
    listeners: Sequence[Listener],
    details: Mapping[str, str],
) -> None:
    """One INFO line that says what this run is: version, worker class, loop, workers, listeners."""
    fields = startup_fields(config, listeners, details)
    processes = f"{fields['workers']} worker(s)" if fields["workers"] else "in process (no workers)"
    loop = fields["event_loop"]
    logger.info(
        "sockserve %s (Python %s) serving %s: worker class %s, %s, %s; listeners: %s",
        fields["version"],
        fields["python"],
        fields["target"],
        fields["worker_class"],
        "no event loop" if loop in ("none", "", None) else f"event loop {loop}",
        processes,
        ", ".join(fields["listeners"]) or "none",
        extra=fields,
    )
