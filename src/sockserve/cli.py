"""The ``sockserve`` command: ``sockserve run TARGET`` and the built-in services.

``sockserve run pkg.module:Handler --bind :7000 --workers 4`` serves a handler
class with supervised worker processes; ``sockserve echo --bind 127.0.0.1:7000``
(and ``discard``, ``daytime``, ``chargen``) is the same machinery with a
built-in target, serving in this process unless ``--workers`` says otherwise.

A run goes through four steps, each in its own module:

1. :mod:`~sockserve.runner.settings`: flags, ``SOCKSERVE_*`` variables and a
   TOML file -> one validated :class:`~sockserve.runner.settings.RunConfig`;
2. :mod:`~sockserve.runner.listeners`: open every listener, all or none;
3. :mod:`~sockserve.runner.worker`: build servers around them and serve;
4. :mod:`~sockserve.runner.master`: with ``--workers N``, supervise N of (3).

Expected failures end in one line on stderr and a named exit status (see
:class:`~sockserve.exitcodes.ExitCode`), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import signal
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sockserve
from sockserve.core.addresses import BindSpec, BindSpecError, parse_bind_spec
from sockserve.exitcodes import ExitCode
from sockserve.options import Switch
from sockserve.runner import systemd
from sockserve.runner.listeners import (
    Listener,
    ListenerError,
    adopt_fd,
    close_listeners,
    open_listeners,
)
from sockserve.runner.loader import TargetError
from sockserve.runner.master import Master
from sockserve.runner.pidfile import pid_file
from sockserve.runner.probe import probe_target
from sockserve.runner.settings import RUNNER_SETTINGS, ConfigError, RunConfig, build_config
from sockserve.runner.signals import SignalInbox
from sockserve.runner.tls import context_from_config, serves_tls
from sockserve.runner.worker import WorkerLoop, build_servers
from sockserve.services import SERVICES

__all__ = ["DEFAULT_BIND", "build_parser", "config_from_args", "main", "resolve_listeners"]

PROG = "sockserve"
DEFAULT_BIND = "127.0.0.1:0"
#: Defaults of the built-in service commands that differ from ``run``'s.
SERVICE_DEFAULTS: Mapping[str, Any] = {"workers": 0, "grace": 2.0}
#: ``run``'s defaults that differ from the settings table's: a process per core.
RUN_DEFAULTS: Mapping[str, Any] = {"workers": os.cpu_count() or 1}
#: One line per record; the "listening on" lines are meant to be parsed by scripts.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

logger = logging.getLogger("sockserve.cli")


def build_parser() -> argparse.ArgumentParser:
    """``run`` plus one subcommand per built-in service, all taking every setting."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve socketserver handlers, or the classic Internet test services.",
        epilog="Settings also come from SOCKSERVE_* variables and --config FILE (TOML).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {sockserve.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        parents=[_options_parser(RUN_DEFAULTS)],
        help="serve a handler class, server class or factory: package.module:Name",
    )
    run.add_argument("target", help="package.module:Name, or a built-in service name")
    service_options = _options_parser(SERVICE_DEFAULTS)
    for name, service in SERVICES.items():
        commands.add_parser(name, parents=[service_options], help=service.description)
    return parser


def _options_parser(defaults: Mapping[str, Any]) -> argparse.ArgumentParser:
    """Every runner setting as an option; ``--help`` shows the defaults of the command."""
    options = argparse.ArgumentParser(add_help=False)
    for opt in RUNNER_SETTINGS:
        flag = f"--{opt.flag}"
        if isinstance(opt.kind, Switch):
            options.add_argument(
                flag, dest=opt.key, default=None, action=argparse.BooleanOptionalAction,
                help=opt.help,
            )  # fmt: skip
        elif opt.multiple:
            options.add_argument(
                flag, dest=opt.key, action="append", metavar=opt.metavar, default=None,
                help=opt.help,
            )  # fmt: skip
        else:
            default = defaults.get(opt.key, opt.runner_value("pool"))
            options.add_argument(
                flag, dest=opt.key, default=None, metavar=opt.metavar,
                help=f"{opt.help} (default: {_show_default(default)})",
            )  # fmt: skip
    options.add_argument("--config", metavar="FILE", help="read settings from a TOML file")
    options.add_argument(
        "--check-config",
        action="store_true",
        help="check the settings and the target (in a short-lived child process), "
        "print the effective settings and exit",
    )
    return options


def _show_default(value: Any) -> str:
    return "off" if value is None else str(value)


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> RunConfig:
    """The validated settings of a parsed command line; raises ``ConfigError``."""
    flags: dict[str, Any] = {"config": args.config}
    for opt in RUNNER_SETTINGS:
        value = getattr(args, opt.key)
        if value is not None:
            flags[opt.key] = value
    if args.command == "run":
        return build_config(flags, target=args.target, environ=environ, defaults=RUN_DEFAULTS)
    # The service shortcuts serve in this process unless told otherwise, and
    # stop within seconds: their connections (echo, chargen) never end by themselves.
    return build_config(flags, target=args.command, environ=environ, defaults=SERVICE_DEFAULTS)


def resolve_listeners(config: RunConfig) -> list[Listener]:
    """Open the configured listeners; without ``--bind``, systemd's sockets or the default."""
    if not config.bind:
        passed = systemd.listen_fds()
        if passed:
            return [adopt_fd(fd, name) for fd, name in passed]
    specs: list[BindSpec] = []
    for text in config.bind or [DEFAULT_BIND]:
        try:
            specs.append(parse_bind_spec(text))
        except BindSpecError as exc:  # validated already; kept for direct callers
            raise ConfigError(str(exc)) from None
    return open_listeners(specs, reuse_port=config.reuse_port)


def serve_in_process(
    config: RunConfig,
    listeners: list[Listener],
    reload_config: Callable[[], RunConfig] | None = None,
) -> int:
    """``--workers 0``: serve here until SIGTERM/SIGINT (drain) or SIGQUIT (abort).

    SIGHUP re-reads the configuration and swaps the TLS context of the TLS
    listeners (a rotated certificate, with no connection refused); other
    settings need worker processes to change (``--workers 1`` or more).
    """
    with (
        SignalInbox([signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP]) as inbox,
        pid_file(config.pid_file),
    ):
        try:
            servers = build_servers(config, listeners)
        except TargetError as exc:
            return _error(exc.exit_code, exc)
        for listener in listeners:
            logger.info("%s listening on %s", config.target, listener.spec)
        systemd.notify(f"READY=1\nMAINPID={os.getpid()}")

        def reload() -> None:
            new = reload_config() if reload_config is not None else config
            context = context_from_config(new)
            swapped = 0
            for server, listener in zip(servers, listeners, strict=True):
                if serves_tls(listener.spec, new) and context is not None:
                    server.ssl_context = context
                    swapped += 1
            logger.info(
                "SIGHUP: TLS certificate reloaded on %d listener(s); other settings change "
                "only with worker processes (--workers 1 or more)",
                swapped,
            )

        loop = WorkerLoop(
            servers,
            inbox,
            grace=config.grace,
            on_stop=_notify_stopping,
            on_reload=reload,
            shutdown_delay=config.shutdown_delay,
        )
        metrics = None
        if config.metrics_bind is not None:
            # Imported only here: it needs prometheus-client (the metrics extra).
            from sockserve.runner.metrics import InProcessMetrics  # noqa: PLC0415

            metrics = InProcessMetrics(servers, [str(listener.spec) for listener in listeners])
            try:
                bound = metrics.start(config.metrics_bind, lambda: not loop.stopping)
            except OSError as exc:
                metrics.stop()
                for server in servers:
                    server.server_close()
                logger.error("cannot serve metrics on %s: %s", config.metrics_bind, exc)
                return int(ExitCode.BIND)
            logger.info("metrics on http://%s/metrics, health on /healthz", bound)
        try:
            reason = loop.run()
        finally:
            if metrics is not None:
                metrics.stop()
    logger.info("stopped")
    return ExitCode.FAILURE if reason == "failure" else ExitCode.OK


def _notify_stopping() -> None:
    systemd.notify("STOPPING=1")


@contextmanager
def _logging(config: RunConfig) -> Iterator[None]:
    """Log the ``sockserve`` tree to stderr at the configured level, or per --log-config."""
    tree = logging.getLogger("sockserve")
    previous_level = tree.level
    handler: logging.Handler | None = None
    if config.log_config:
        logging.config.dictConfig(_read_log_config(config.log_config))
    else:
        handler = logging.StreamHandler(sys.stderr)
        # With worker processes, say which process wrote each line.
        fmt = LOG_FORMAT if config.workers == 0 else "[%(process)d] " + LOG_FORMAT
        handler.setFormatter(logging.Formatter(fmt))
        tree.addHandler(handler)
        tree.setLevel(config.log_level.upper())
    try:
        yield
    finally:
        if handler is not None:
            tree.removeHandler(handler)
        tree.setLevel(previous_level)


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


def _error(status: int, exc: BaseException) -> int:
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return int(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (argparse exits by itself on --help)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        return _error(ExitCode.USAGE, exc)
    try:
        with _logging(config):
            return _run(config, args)
    except ConfigError as exc:
        return _error(ExitCode.USAGE, exc)
    except (ValueError, TypeError) as exc:  # dictConfig's complaints about --log-config
        return _error(ExitCode.USAGE, exc)


def _run(config: RunConfig, args: argparse.Namespace) -> int:
    if args.check_config:
        try:
            worker_class = probe_target(config)
        except TargetError as exc:
            return _error(exc.exit_code, exc)
        print(config.describe(worker_class))
        return ExitCode.OK
    try:
        listeners = resolve_listeners(config)
    except ListenerError as exc:
        return _error(ExitCode.BIND, exc)
    try:

        def reload() -> RunConfig:
            return config_from_args(args)

        if config.workers == 0:
            return serve_in_process(config, listeners, reload)
        return Master(config, listeners, reload_config=reload).run()
    finally:
        close_listeners(listeners)
