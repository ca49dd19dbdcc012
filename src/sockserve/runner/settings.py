"""One validated configuration behind the flags, the environment and the TOML file.

Every setting is declared once, in :data:`SETTINGS`: its name (the TOML key;
``--name-with-dashes`` on the command line; ``SOCKSERVE_NAME`` in the
environment), how to read it from text, its default and its help. The three
sources are merged in order of precedence (defaults < file < environment <
flags), then the whole is validated in one place, so ``--check-config``
prints exactly what a run would use and every error names its source.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sockserve.core.addresses import BindSpecError, parse_bind_spec
from sockserve.strategies.eventloop import EVENT_LOOP_KINDS

__all__ = ["SETTINGS", "ConfigError", "RunConfig", "Setting", "build_config"]

ENV_PREFIX = "SOCKSERVE_"
WORKER_CLASSES = ("sync", "threads", "pool", "fork", "async")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_NONE_WORDS = frozenset({"none", "off", "unlimited"})


class ConfigError(ValueError):
    """A setting has a bad value or a source cannot be read; the message names both."""


@dataclass(frozen=True)
class Setting:
    """One configuration setting and how each source spells it."""

    name: str
    from_text: Callable[[str], Any]
    default: Any
    help: str
    check: Callable[[Any], str | None] = lambda value: None
    multiple: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        return None if text.strip().lower() in _NONE_WORDS else parse(text)

    return read


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _at_least(minimum: float, *, optional: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not minimum <= value < math.inf
        ):
            return f"must be a finite number >= {minimum:g}" + (" or none" if optional else "")
        return None

    return check


def _integer(value: Any) -> str | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        return "must be a whole number"
    return None


def _all(*checks: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        for one in checks:
            problem = one(value)
            if problem:
                return problem
        return None

    return check


def _choice(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _bind_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return "must be a list of bind addresses"
    for item in value:
        try:
            parse_bind_spec(item)
        except BindSpecError as exc:
            return str(exc)
    return None


def _count(minimum: int, *, optional: bool = False) -> Callable[[Any], str | None]:
    return _all(_integer, _at_least(minimum, optional=optional))


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "bind",
        str,
        [],
        "address to listen on (repeatable): HOST:PORT, [V6]:PORT, :PORT, "
        "udp://HOST:PORT, unix:PATH, fd://N; default 127.0.0.1:0, or the sockets systemd "
        "passed",
        _bind_list,
        multiple=True,
    ),
    Setting(
        "workers",
        int,
        0,
        "worker processes; 0 serves in this process without a supervisor",
        _count(0),
    ),
    Setting(
        "worker_class",
        str,
        "pool",
        "how each worker handles connections: " + " | ".join(WORKER_CLASSES),
        _choice(*WORKER_CLASSES),
    ),
    Setting("threads", int, 32, "pool worker threads per process (--worker-class pool)", _count(1)),
    Setting(
        "max_pending",
        int,
        32,
        "connections that may wait for a pool thread before the server stops accepting",
        _count(0),
    ),
    Setting(
        "event_loop",
        str,
        "auto",
        "event loop of --worker-class async: auto (uvloop when installed), asyncio or uvloop",
        _choice(*EVENT_LOOP_KINDS),
    ),
    Setting(
        "eager_workers",
        int,
        2,
        "pool threads that start connections at once; beyond them a connection first "
        "waits --grow-after for a busy thread",
        _count(1),
    ),
    Setting(
        "grow_after",
        float,
        0.002,
        "seconds a queued connection waits for a busy pool thread before another takes it "
        "(0: start every connection at once)",
        _at_least(0),
    ),
    Setting(
        "overflow",
        str,
        "block",
        "when the pool is full: block (leave clients in the "
        "kernel backlog) or reject (accept and close)",
        _choice("block", "reject"),
    ),
    Setting(
        "dispatch",
        str,
        "immediate",
        "immediate, or readable: a connection takes a pool thread only once it has sent data",
        _choice("immediate", "readable"),
    ),
    Setting(
        "max_connections",
        _optional(int),
        4096,
        "concurrent connections per process (none: no limit)",
        _count(1, optional=True),
    ),
    Setting(
        "max_per_ip",
        _optional(int),
        None,
        "concurrent connections per client IP (none: no limit)",
        _count(1, optional=True),
    ),
    Setting(
        "idle_timeout",
        _optional(float),
        300.0,
        "seconds a connection may stay silent (none: forever)",
        _at_least(0.001, optional=True),
    ),
    Setting(
        "first_byte_timeout",
        _optional(float),
        60.0,
        "with --dispatch readable: seconds to wait for a new connection's first byte",
        _at_least(0.001, optional=True),
    ),
    Setting(
        "max_line",
        _optional(int),
        65536,
        "longest line a handler's rfile.readline() returns (none: unbounded)",
        _count(1, optional=True),
    ),
    Setting(
        "grace", float, 30.0, "seconds a graceful stop lets requests in flight finish", _at_least(0)
    ),
    Setting(
        "reuse_port",
        _boolean,
        False,
        "each worker opens its own listening socket with SO_REUSEPORT",
    ),
    Setting(
        "worker_timeout",
        _optional(float),
        30.0,
        "kill and replace a worker whose serving "
        "loop shows no progress for this long (none: never)",
        _at_least(0.1, optional=True),
    ),
    Setting(
        "max_requests", int, 0, "recycle a worker after this many connections (0: never)", _count(0)
    ),
    Setting(
        "max_requests_jitter",
        int,
        0,
        "add up to this many to max_requests per worker, so workers do not recycle together",
        _count(0),
    ),
    Setting("pid_file", _optional(str), None, "write the master's pid to this file"),
    Setting("log_level", str, "info", "log level: " + ", ".join(LOG_LEVELS), _choice(*LOG_LEVELS)),
    Setting(
        "tcp_nodelay",
        _boolean,
        True,
        "set TCP_NODELAY on accepted TCP connections (no Nagle delay on small writes)",
    ),
    Setting(
        "access_log", _boolean, True, "log one line per connection (peer, duration, bytes, outcome)"
    ),
    Setting("log_config", _optional(str), None, "a logging.config dictConfig file (JSON or TOML)"),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class RunConfig:
    """The effective settings of one run (see :data:`SETTINGS` for their meaning)."""

    target: str
    bind: list[str]
    workers: int
    worker_class: str
    threads: int
    max_pending: int
    event_loop: str
    eager_workers: int
    grow_after: float
    overflow: str
    dispatch: str
    max_connections: int | None
    max_per_ip: int | None
    idle_timeout: float | None
    first_byte_timeout: float | None
    max_line: int | None
    grace: float
    reuse_port: bool
    worker_timeout: float | None
    max_requests: int
    max_requests_jitter: int
    pid_file: str | None
    log_level: str
    tcp_nodelay: bool
    access_log: bool
    log_config: str | None
    config_file: str | None = None

    def describe(self) -> str:
        """The settings as ``name = value`` lines (what ``--check-config`` prints)."""
        return "\n".join(f"{f.name} = {getattr(self, f.name)!r}" for f in fields(self))


def read_config_file(path: str) -> dict[str, Any]:
    """Read a TOML file: a ``[sockserve]`` table if present, else its top level."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from exc
    table = data.get("sockserve", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path!r}: [sockserve] must be a table")
    values: dict[str, Any] = {}
    for key, raw in table.items():
        name = key.replace("-", "_")
        if name == "target":
            values[name] = raw
            continue
        setting = _BY_NAME.get(name)
        if setting is None:
            raise ConfigError(f"config file {path!r}: unknown setting {key!r}")
        value = raw
        if setting.multiple and isinstance(raw, str):
            value = [raw]
        elif isinstance(raw, str) and setting.from_text is not str:
            value = _from_text(setting, raw, f"config file {path!r}")
        values[name] = value
    return values


def _from_text(setting: Setting, text: str, source: str) -> Any:
    try:
        return setting.from_text(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: {setting.name} = {text!r}: {exc}") from exc


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SOCKSERVE_*`` variables; ``SOCKSERVE_BIND`` may list several addresses, comma-separated."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        text = environ.get(setting.env)
        if text is None:
            continue
        if setting.multiple:
            values[setting.name] = [part.strip() for part in text.split(",") if part.strip()]
        else:
            values[setting.name] = _from_text(setting, text, f"environment {setting.env}")
    return values


def build_config(
    flags: Mapping[str, Any],
    *,
    target: str | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Merge defaults < config file < environment < flags, validate, return the result.

    ``flags`` holds only the options given on the command line (plus
    ``config`` for the file path). ``defaults`` overrides the table's defaults
    for one command (the service shortcuts serve in-process, say).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    values.update(defaults or {})
    config_file = flags.get("config") or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        values.update(read_config_file(str(config_file)))
    values.update(read_environment(env))
    values.update({k: v for k, v in flags.items() if k in _BY_NAME and v is not None})
    chosen_target = target or values.pop("target", None)
    values.pop("target", None)
    if not chosen_target:
        raise ConfigError("no target: give package.module:Name or a service name")
    for setting in SETTINGS:
        problem = setting.check(values[setting.name])
        if problem and setting.multiple:
            raise ConfigError(problem)  # already names the one bad item
        if problem:
            raise ConfigError(f"{setting.flag.lstrip('-')} = {values[setting.name]!r}: {problem}")
    if values["reuse_port"] and values["workers"] == 0:
        raise ConfigError("reuse-port needs worker processes (--workers 1 or more)")
    return RunConfig(
        target=str(chosen_target),
        config_file=str(config_file) if config_file else None,
        **values,
    )
