"""One validated configuration behind the flags, the environment and the TOML file.

The settings themselves are declared once, in :data:`sockserve.options.OPTIONS`
(the servers' options and the runner's own): this module only reads them
from their sources and checks them. The sources are merged in order of
precedence (defaults < file < environment < flags), each value is checked by
the same validator a server constructor uses, and every error names the
setting and where its value came from (``--idle-timeout``,
``SOCKSERVE_IDLE_TIMEOUT``, or the file and its key), so ``--check-config``
rejects exactly what a run would.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sockserve.core.addresses import BindSpecError, parse_bind_spec
from sockserve.options import OPTIONS, Option, TextList, keepalive_problem
from sockserve.runner.privileges import needs_root, resolve_identity

__all__ = ["ENV_PREFIX", "RUNNER_SETTINGS", "ConfigError", "RunConfig", "build_config"]

ENV_PREFIX = "SOCKSERVE_"
#: The settings the runner reads (every option with a flag), in ``--help`` order.
RUNNER_SETTINGS: tuple[Option, ...] = tuple(opt for opt in OPTIONS if opt.flag is not None)
_BY_KEY = {opt.key: opt for opt in RUNNER_SETTINGS}
DEFAULT = "default"


class ConfigError(ValueError):
    """A setting has a bad value or a source cannot be read; the message names both."""


def family_of(worker_class: str) -> str:
    """The server family whose defaults a worker class uses (see :mod:`sockserve.options`)."""
    return "async" if worker_class == "async" else "pool"


@dataclass(frozen=True)
class RunConfig:
    """The effective settings of one run: each value, and where it came from.

    Server options nobody set take the default of the server family the
    worker class uses (async servers allow more connections than pool ones),
    so they are resolved per worker class by :meth:`server_options` and
    :meth:`value`.
    """

    target: str
    #: Setting key -> value, for the settings some source gave (or a command's default).
    given: Mapping[str, Any]
    #: Setting key -> where its value came from: a flag, a variable, a file, or "default".
    sources: Mapping[str, str] = field(default_factory=dict)
    config_file: str | None = None
    #: ``SOCKSERVE_*`` variables that name no setting (a typo), each with a hint.
    unknown_variables: tuple[str, ...] = ()

    def value(self, key: str, worker_class: str | None = None) -> Any:
        """The effective value of setting ``key`` for ``worker_class`` (default: the setting's)."""
        if key in self.given:
            return self.given[key]
        family = family_of(worker_class or self.worker_class)
        return _BY_KEY[key].runner_value(family)

    def source(self, key: str) -> str:
        return self.sources.get(key, DEFAULT)

    # The runner's own settings, typed.
    @property
    def bind(self) -> list[str]:
        return list(self.value("bind"))

    @property
    def workers(self) -> int:
        return int(self.value("workers"))

    @property
    def worker_class(self) -> str:
        return str(self.given.get("worker_class", _BY_KEY["worker_class"].default("all")))

    @property
    def grace(self) -> float:
        return float(self.value("grace"))

    @property
    def reuse_port(self) -> bool:
        return bool(self.value("reuse_port"))

    @property
    def reuse_port_overlap(self) -> bool:
        return bool(self.value("reuse_port_overlap"))

    @property
    def worker_timeout(self) -> float | None:
        timeout: float | None = self.value("worker_timeout")
        return timeout

    @property
    def max_requests(self) -> int:
        return int(self.value("max_requests"))

    @property
    def max_requests_jitter(self) -> int:
        return int(self.value("max_requests_jitter"))

    @property
    def chdir(self) -> str | None:
        path: str | None = self.value("chdir")
        return path

    @property
    def preload(self) -> bool:
        return bool(self.value("preload"))

    @property
    def reload(self) -> bool:
        return bool(self.value("reload"))

    @property
    def env_file(self) -> str | None:
        path: str | None = self.value("env_file")
        return path

    @property
    def user(self) -> str | None:
        name: str | None = self.value("user")
        return name

    @property
    def group(self) -> str | None:
        name: str | None = self.value("group")
        return name

    @property
    def umask(self) -> int | None:
        mask: int | None = self.value("umask")
        return mask

    @property
    def backlog(self) -> int:
        return int(self.value("backlog"))

    @property
    def pid_file(self) -> str | None:
        path: str | None = self.value("pid_file")
        return path

    @property
    def shutdown_delay(self) -> float:
        return float(self.value("shutdown_delay"))

    @property
    def metrics_bind(self) -> str | None:
        address: str | None = self.value("metrics_bind")
        return address

    @property
    def log_level(self) -> str:
        return str(self.value("log_level"))

    @property
    def log_config(self) -> str | None:
        path: str | None = self.value("log_config")
        return path

    @property
    def access_log(self) -> bool:
        return bool(self.value("access_log"))

    @property
    def log_format(self) -> str:
        return str(self.value("log_format"))

    @property
    def access_logfile(self) -> str | None:
        path: str | None = self.value("access_logfile")
        return path

    @property
    def error_logfile(self) -> str | None:
        path: str | None = self.value("error_logfile")
        return path

    def server_options(self, server_class: type, worker_class: str) -> dict[str, Any]:
        """The constructor keyword arguments for ``server_class``, serving as ``worker_class``.

        Every server option the class has (pool options for pool servers, the
        event loop for async ones; none of the stream limits for a datagram
        server), with the value set, or the default of ``worker_class``'s family.
        """
        datagram = getattr(server_class, "socket_type", None) == socket.SOCK_DGRAM
        options: dict[str, Any] = {}
        for opt in RUNNER_SETTINGS:
            if opt.owner == "runner" or (datagram and opt.stream_only):
                continue
            if hasattr(server_class, opt.name):
                options[opt.name] = self.value(opt.key, worker_class)
        return options

    def describe(self, worker_class: str | None = None) -> str:
        """The settings as ``key = value`` lines (what ``--check-config`` prints)."""
        lines = [f"target = {self.target!r}"]
        for opt in RUNNER_SETTINGS:
            value = self.value(opt.key, worker_class)
            if opt.key == "worker_class" and worker_class is not None:
                value = worker_class
            shown = oct(value) if opt.key == "socket_mode" and value is not None else repr(value)
            lines.append(f"{opt.key} = {shown}")
        lines.append(f"config_file = {self.config_file!r}")
        return "\n".join(lines)


def read_config_file(path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a TOML file: a ``[sockserve]`` table if present, else its top level.

    Returns the values (strings parsed like a flag's text, other TOML values
    checked as they are) and their sources.
    """
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
    sources: dict[str, str] = {}
    for raw_key, raw in table.items():
        key = raw_key.replace("-", "_")
        source = f"config file {path!r}, key {raw_key!r}"
        if key == "target":
            values[key] = raw
            continue
        opt = _BY_KEY.get(key)
        if opt is None:
            raise ConfigError(f"config file {path!r}: unknown setting {raw_key!r}")
        if isinstance(raw, str):
            values[key] = [raw] if opt.multiple else _parse(opt, raw, source)
        else:
            values[key] = raw
        sources[key] = source
    return values, sources


def _parse(opt: Option, text: str, source: str) -> Any:
    try:
        return opt.kind.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{opt.key} = {text!r} (from {source}): {exc}") from None


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` allowed, ``#`` comments, values quoted or not).

    What systemd's ``EnvironmentFile=`` and docker's ``--env-file`` read, no
    more: no variable expansion, no multi-line values.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"cannot read env file {path!r}: {why}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ConfigError(f"env file {path!r}, line {number}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def read_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``SOCKSERVE_*`` variables; ``SOCKSERVE_BIND`` may list several addresses, comma-separated."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in RUNNER_SETTINGS:
        text = environ.get(opt.env)
        if text is None:
            continue
        source = f"environment {opt.env}"
        values[opt.key] = _parse(opt, text, source)
        sources[opt.key] = source
    return values, sources


#: Variables of the test and benchmark harnesses, not settings (never warned about).
_HARNESS_PREFIXES = ("SOCKSERVE_TEST_", "SOCKSERVE_BENCH_")
_KNOWN_VARIABLES = frozenset({ENV_PREFIX + "CONFIG", *(opt.env for opt in RUNNER_SETTINGS)})


def unknown_variables(environ: Mapping[str, str]) -> tuple[str, ...]:
    """``SOCKSERVE_*`` names that are no setting, as ``NAME (did you mean OTHER?)``.

    A mistyped variable would otherwise do nothing, silently (the TOML file
    already refuses unknown keys; a variable only warns, since the
    environment is shared with other programs).
    """
    found = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in _KNOWN_VARIABLES:
            continue
        if name.startswith(_HARNESS_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(_KNOWN_VARIABLES), n=1, cutoff=0.8)
        found.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return tuple(found)


def read_flags(flags: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Values from the command line: text is parsed, booleans and lists taken as they are."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, raw in flags.items():
        opt = _BY_KEY.get(key)
        if opt is None or raw is None:
            continue
        source = f"--{opt.flag}"
        if isinstance(raw, str) and not (isinstance(opt.kind, TextList) and opt.multiple):
            values[key] = _parse(opt, raw, source)
        else:
            values[key] = raw
        sources[key] = source
    return values, sources


def build_config(
    flags: Mapping[str, Any],
    *,
    target: str | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Merge defaults < config file < environment < flags, validate, return the result.

    ``flags`` holds only the options given on the command line, by setting
    key (plus ``config`` for the file path). ``defaults`` overrides the
    defaults for one command (the service shortcuts serve in-process, say).
    """
    env = os.environ if environ is None else environ
    given: dict[str, Any] = dict(defaults or {})
    sources: dict[str, str] = {}
    config_file = flags.get("config") or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        values, where = read_config_file(str(config_file))
        given.update(values)
        sources.update(where)
    for read in (read_environment(env), read_flags(flags)):
        given.update(read[0])
        sources.update(read[1])
    chosen_target = target or given.pop("target", None)
    given.pop("target", None)
    if not chosen_target:
        raise ConfigError("no target: give package.module:Name or a service name")
    for key, value in list(given.items()):
        given[key] = _check(_BY_KEY[key], value, sources.get(key, DEFAULT))
    config = RunConfig(
        target=str(chosen_target),
        given=given,
        sources=sources,
        config_file=str(config_file) if config_file else None,
        unknown_variables=unknown_variables(env),
    )
    _check_together(config)
    return config


def _check(opt: Option, value: Any, source: str) -> Any:
    try:
        checked = opt.kind.check(value)
    except ValueError as exc:
        raise ConfigError(f"{opt.key} = {value!r} (from {source}): {exc}") from None
    if opt.key == "bind":
        for item in checked:
            try:
                parse_bind_spec(item)
            except BindSpecError as exc:
                raise ConfigError(f"{exc} (from {source})") from None
    return checked


def _check_together(config: RunConfig) -> None:
    """Rules that involve more than one setting, or the machine."""
    if config.reuse_port and config.workers == 0:
        raise ConfigError(
            f"reuse_port (from {config.source('reuse_port')}) needs worker processes "
            "(--workers 1 or more)"
        )
    if config.reload and config.workers == 0:
        raise ConfigError(
            f"reload (from {config.source('reload')}) needs worker processes "
            "(--workers 1 or more): a worker restarts to load the changed code"
        )
    if config.reload and config.preload:
        raise ConfigError(
            f"reload (from {config.source('reload')}) and preload (from "
            f"{config.source('preload')}) exclude each other: with --preload the master holds "
            "the code, and restarted workers would inherit the old one"
        )
    if config.reuse_port_overlap and not config.reuse_port:
        raise ConfigError(
            f"reuse_port_overlap (from {config.source('reuse_port_overlap')}) needs --reuse-port"
        )
    _check_identity(config)
    _check_tls(config)
    _check_socket_files(config)
    problem = keepalive_problem(config.value)
    if problem:
        sources = ", ".join(
            f"{key} from {config.source(key)}"
            for key in ("tcp_keepalive", "tcp_keepalive_interval", "tcp_keepalive_count")
            if key in config.sources
        )
        raise ConfigError(f"{problem} ({sources})")
    _check_metrics(config)
    if config.value("event_loop") == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ConfigError(
            f"event_loop = 'uvloop' (from {config.source('event_loop')}): uvloop is not "
            "installed (pip install 'sockserve[uvloop]')"
        )


_SOCKET_FILE_SETTINGS = ("socket_mode", "socket_owner", "socket_group")


def _check_socket_files(config: RunConfig) -> None:
    """A socket file's mode or owner with no ``unix:`` listener to apply to is a mistake.

    (Sockets systemd passes are created by systemd: its .socket unit sets
    ``SocketMode=``, ``SocketUser=`` and ``SocketGroup=``.)
    """
    if any(spec.startswith(("unix:", "tls://unix:")) for spec in config.bind):
        return
    for key in _SOCKET_FILE_SETTINGS:
        if config.value(key) is not None:
            raise ConfigError(
                f"{key} (from {config.source(key)}) applies to the socket files of unix: "
                "listeners, and --bind names none (for sockets systemd passes: SocketMode=, "
                "SocketUser=, SocketGroup= in the .socket unit)"
            )


def _check_identity(config: RunConfig) -> None:
    """``--user``/``--group`` must exist, and changing to them needs root."""
    try:
        identity = resolve_identity(config.user, config.group)
    except ValueError as exc:
        key = "user" if "user" in str(exc) else "group"
        raise ConfigError(f"{key} (from {config.source(key)}): {exc}") from None
    if needs_root(identity):
        key = "user" if config.user is not None else "group"
        raise ConfigError(
            f"{key} = {config.value(key)!r} (from {config.source(key)}): changing the user or "
            f"group needs root (running as uid {os.getuid()})"
        )


def _check_metrics(config: RunConfig) -> None:
    """--metrics-bind: a TCP HOST:PORT, and prometheus-client installed."""
    address = config.metrics_bind
    if address is None:
        return
    where = f"metrics_bind = {address!r} (from {config.source('metrics_bind')})"
    try:
        spec = parse_bind_spec(address)
    except BindSpecError as exc:
        raise ConfigError(f"{where}: {exc.problem}") from None
    if spec.transport != "tcp":
        raise ConfigError(f"{where}: must be a TCP HOST:PORT")
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(
            f"{where}: prometheus-client is not installed (pip install 'sockserve[metrics]')"
        )


_TLS_DETAILS = (
    "keyfile",
    "keyfile_password",
    "keyfile_password_file",
    "ca_certs",
    "ciphers",
    "alpn",
)


def _check_tls(config: RunConfig) -> None:
    """TLS settings that cannot work are refused here, naming the setting and its source.

    With a certificate the context is built once now, so unreadable files, a
    wrong password or a key that does not match the certificate stop the run
    (and ``--check-config``) with exit status 2 instead of failing in every worker.
    """
    certfile = config.value("certfile")
    if certfile is None:
        for key in (*_TLS_DETAILS, "cert_reqs"):
            if key in config.sources and config.value(key) not in (None, [], "none"):
                raise ConfigError(
                    f"{key} (from {config.source(key)}) needs a certificate: --certfile"
                )
        tls_binds = [spec for spec in config.bind if spec.startswith("tls://")]
        if tls_binds:
            raise ConfigError(f"bind = {tls_binds[0]!r} needs a certificate: --certfile")
        return
    from sockserve.runner.tls import context_from_config  # noqa: PLC0415 - ssl only when used

    try:
        context_from_config(config)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"certfile = {certfile!r} (from {config.source('certfile')}): cannot serve TLS "
            f"with it: {exc}"
        ) from None
