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
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sockserve
from sockserve.core.addresses import BindSpec, BindSpecError, parse_bind_spec
from sockserve.core.fdlimit import ensure_descriptors
from sockserve.core.unixfiles import group_id, user_id
from sockserve.exitcodes import ExitCode
from sockserve.options import Switch
from sockserve.runner import systemd
from sockserve.runner.listeners import (
    Listener,
    ListenerError,
    SocketFileOptions,
    adopt_fd,
    close_listeners,
    open_listeners,
)
from sockserve.runner.loader import TargetError, load_target
from sockserve.runner.logsetup import log_startup, run_logging
from sockserve.runner.master import Master
from sockserve.runner.pidfile import PidFileError, pid_file
from sockserve.runner.probe import probe_target
from sockserve.runner.settings import (
    RUNNER_SETTINGS,
    ConfigError,
    RunConfig,
    build_config,
    read_env_file,
)
from sockserve.runner.signals import SignalInbox
from sockserve.runner.tls import context_from_config, serves_tls
from sockserve.runner.worker import WorkerLoop, build_servers, server_details
from sockserve.services import SERVICES

__all__ = ["DEFAULT_BIND", "build_parser", "config_from_args", "main", "resolve_listeners"]

PROG = "sockserve"
DEFAULT_BIND = "127.0.0.1:0"
#: Defaults of the built-in service commands that differ from ``run``'s.
SERVICE_DEFAULTS: Mapping[str, Any] = {"workers": 0, "grace": 2.0}
#: ``run``'s defaults that differ from the settings table's: a process per core.
RUN_DEFAULTS: Mapping[str, Any] = {"workers": os.cpu_count() or 1}

logger = logging.getLogger("sockserve.cli")


#: ``--help``'s headings, in the order the groups first appear in the settings table.
GROUP_TITLES: Mapping[str, str] = {
    "listening": "where to listen",
    "processes": "processes",
    "target": "the target",
    "privileges": "privileges and files",
    "pool": "the pool worker class (--worker-class pool)",
    "async": "the async worker class",
    "limits": "limits, per worker",
    "connections": "connections",
    "logging": "logging",
    "access": "access control and the PROXY protocol",
    "tls": "TLS",
}

#: What each exit status means, for ``--help`` (docs/runner.md has the long form).
EXIT_MEANINGS: Mapping[ExitCode, str] = {
    ExitCode.OK: "stopped as asked",
    ExitCode.FAILURE: "an unexpected failure (the log says what)",
    ExitCode.USAGE: "a bad flag, variable, config file or pid file",
    ExitCode.BIND: "a listener could not be opened",
    ExitCode.WORKER_BOOT: "a worker failed to start",
    ExitCode.IMPORT: "the target's module did not import",
    ExitCode.NOT_FOUND: "the module has no such name",
    ExitCode.BAD_TARGET: "not a handler, server or factory, or not for this socket",
}

RUN_DESCRIPTION = """Serve TARGET, package.module:Name (a request handler class, a server class or a
factory function; or a built-in service name), with a master process that keeps
--workers worker processes serving the listening sockets it opened."""

RUN_EPILOG = """signals (to the master):
  TERM, INT    graceful stop: connections in flight get --grace seconds
               (Ctrl-C again forces the stop)
  QUIT         immediate stop
  HUP          reload: new workers with freshly imported code and re-read
               settings start, then the old ones drain
  TTIN, TTOU   one worker more, one worker fewer

exit status:
{exit_codes}

examples:
  sockserve run myapp.server:Handler -b 0.0.0.0:7000 -w 4
  sockserve run myapp.server:Handler -c sockserve.toml --check-config

Settings also come from SOCKSERVE_* variables (SOCKSERVE_WORKERS=4) and a TOML
file (-c FILE): flags > variables > file > defaults. Limits that say "off"
take none, off or unlimited."""


def build_parser() -> argparse.ArgumentParser:
    """``run`` plus one subcommand per built-in service, all taking every setting."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve socketserver handlers, or the classic Internet test services.",
        epilog="Settings also come from SOCKSERVE_* variables and --config FILE (TOML). "
        "sockserve run --help lists them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {sockserve.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    exit_codes = "\n".join(
        f"  {int(code)}  {code.name:<12} {EXIT_MEANINGS[code]}" for code in ExitCode
    )
    run = commands.add_parser(
        "run",
        parents=[_options_parser(RUN_DEFAULTS)],
        help="serve a handler class, server class or factory: package.module:Name",
        usage="%(prog)s TARGET [OPTIONS]  (%(prog)s --help lists the options)",
        description=RUN_DESCRIPTION,
        epilog=RUN_EPILOG.format(exit_codes=exit_codes),
        formatter_class=_HelpFormatter,
    )
    run.add_argument("target", metavar="TARGET", help="package.module:Name, or a service name")
    service_options = _options_parser(SERVICE_DEFAULTS)
    for name, service in SERVICES.items():
        commands.add_parser(
            name,
            parents=[service_options],
            help=service.description,
            usage="%(prog)s [OPTIONS]",
            description=f"{service.description[:1].upper()}{service.description[1:]}. "
            "It takes the settings of sockserve run (serving in this process by default).",
            formatter_class=_HelpFormatter,
        )
    return parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the epilog's layout; give the option column some room."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _options_parser(defaults: Mapping[str, Any]) -> argparse.ArgumentParser:
    """Every runner setting as an option, grouped; ``--help`` shows the command's defaults."""
    options = argparse.ArgumentParser(add_help=False)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for opt in RUNNER_SETTINGS:
        if opt.group not in groups:
            groups[opt.group] = options.add_argument_group(GROUP_TITLES.get(opt.group, opt.group))
        group = groups[opt.group]
        flags = [f"--{opt.flag}"] if opt.short is None else [opt.short, f"--{opt.flag}"]
        default = defaults.get(opt.key, opt.runner_value("pool"))
        if isinstance(opt.kind, Switch):
            group.add_argument(
                *flags, dest=opt.key, default=None, action=argparse.BooleanOptionalAction,
                help=f"{opt.help} (default: {'on' if default else 'off'})",
            )  # fmt: skip
        elif opt.multiple:
            group.add_argument(
                *flags, dest=opt.key, action="append", metavar=opt.metavar, default=None,
                help=opt.help,
            )  # fmt: skip
        else:
            group.add_argument(
                *flags, dest=opt.key, default=None, metavar=opt.metavar,
                help=f"{opt.help} (default: {_show_default(default)})",
            )  # fmt: skip
    config = options.add_argument_group("configuration")
    config.add_argument("-c", "--config", metavar="PATH", help="read settings from this TOML file")
    config.add_argument(
        "--check-config",
        action="store_true",
        help="check the settings and the target (in a short-lived child process), "
        "print the effective settings and exit",
    )
    return options


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found: argparse.ArgumentParser = commands.choices[name]
    return found


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
    env = dict(os.environ if environ is None else environ)
    config = _build_config(args, flags, env)
    if config.env_file:
        # Its SOCKSERVE_* variables are settings too, below the real environment's.
        config = _build_config(args, flags, {**read_env_file(config.env_file), **env})
    return config


def _build_config(
    args: argparse.Namespace, flags: Mapping[str, Any], environ: Mapping[str, str]
) -> RunConfig:
    if args.command == "run":
        return build_config(flags, target=args.target, environ=environ, defaults=RUN_DEFAULTS)
    # The service shortcuts serve in this process unless told otherwise, and
    # stop within seconds: their connections (echo, chargen) never end by themselves.
    return build_config(flags, target=args.command, environ=environ, defaults=SERVICE_DEFAULTS)


def apply_env_file(config: RunConfig, base: Mapping[str, str]) -> None:
    """Put ``--env-file``'s variables in this process's environment (workers inherit it).

    A variable of ``base`` (the environment the command started with) is
    kept: the real environment wins, as for settings. Read again on reload.
    """
    if config.env_file:
        for key, value in read_env_file(config.env_file).items():
            if key not in base:
                os.environ[key] = value


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
    return open_listeners(
        specs,
        backlog=config.backlog,
        reuse_port=config.reuse_port,
        overlap=config.reuse_port_overlap,
        socket_files=socket_files(config),
    )


def socket_files(config: RunConfig) -> SocketFileOptions:
    """How the Unix socket files are created (names were checked with the configuration)."""
    return SocketFileOptions(
        mode=config.value("socket_mode"),
        uid=user_id(config.value("socket_owner")),
        gid=group_id(config.value("socket_group")),
    )


def check_descriptors(config: RunConfig, listeners: list[Listener]) -> None:
    """Raise the open-files limit for every stream listener's ``max_connections``, or warn.

    Done by the master before any worker exists: the workers inherit the
    raised limit, and the warning, if any, is logged once instead of once
    per worker. (The master does not import the target, so an async handler
    under the default worker class is counted with the pool's limit here; its
    worker then checks its own, larger one.)
    """
    per_worker = config.value("max_connections")
    streams = sum(1 for listener in listeners if not listener.datagram)
    if per_worker is None or not streams:
        return
    where = f"{config.target} ({streams} stream listener(s))"
    ensure_descriptors(per_worker * streams, where=where, logger=logger)


def serve_in_process(
    config: RunConfig,
    listeners: list[Listener],
    reload_config: Callable[[], RunConfig] | None = None,
) -> int:
    """``--workers 0``: serve here until SIGTERM/SIGINT (drain) or SIGQUIT (abort).

    SIGHUP re-reads the configuration and swaps the TLS context of the TLS
    listeners (a rotated certificate, with no connection refused); other
    settings need worker processes to change (``--workers 1`` or more).
    SIGUSR1 reopens the log files (logrotate's ``postrotate``).
    """
    with SignalInbox(
        [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1]
    ) as inbox:
        try:
            servers = build_servers(config, listeners)
        except TargetError as exc:
            return _error(exc.exit_code, exc)
        log_startup(logger, config, listeners, server_details(servers))
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


def enter_directory(config: RunConfig, args: argparse.Namespace) -> None:
    """``--chdir``, then the working directory first on the import path.

    gunicorn and uvicorn both import the target from the directory they are
    started in; the ``sockserve`` script would not (its ``sys.path[0]`` is
    the script's own directory), so ``myapp.server:Handler`` failed where
    ``python -m sockserve`` worked. The configuration file is made absolute
    first, so that a reload (SIGHUP) reads the same one.
    """
    if config.config_file is not None and args.config is None:
        args.config = config.config_file  # from SOCKSERVE_CONFIG: keep it past the chdir
    if args.config:
        args.config = os.path.abspath(args.config)
    if config.env_file and args.env_file is None:
        args.env_file = config.env_file
    if args.env_file:
        args.env_file = os.path.abspath(args.env_file)
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(
                f"chdir = {config.chdir!r} (from {config.source('chdir')}): {exc.strerror}"
            ) from None
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    if config.umask is not None:  # before the pid file and socket files are made
        os.umask(config.umask)


def _error(status: int, exc: BaseException) -> int:
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return int(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (argparse exits by itself on --help)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # answered with the command's usage, not the top-level one
        _subcommand(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    base = dict(os.environ)  # before --env-file adds to it: what a reload starts from
    try:
        config = config_from_args(args, base)
        enter_directory(config, args)
        apply_env_file(config, base)
    except ConfigError as exc:
        return _error(ExitCode.USAGE, exc)
    try:
        with run_logging(config):
            return _run(config, args, base)
    except ConfigError as exc:
        return _error(ExitCode.USAGE, exc)
    except (ValueError, TypeError) as exc:  # dictConfig's complaints about --log-config
        return _error(ExitCode.USAGE, exc)


def _run(config: RunConfig, args: argparse.Namespace, base: Mapping[str, str]) -> int:
    for name in config.unknown_variables:
        logger.warning("ignoring %s: no such setting", name)
    if args.check_config:
        try:
            worker_class = probe_target(config)
        except TargetError as exc:
            return _error(exc.exit_code, exc)
        print(config.describe(worker_class))
        return ExitCode.OK
    try:
        with pid_file(config.pid_file):  # before binding: a second instance is told why
            return _serve(config, args, base)
    except PidFileError as exc:
        return _error(ExitCode.USAGE, exc)


def _serve(config: RunConfig, args: argparse.Namespace, base: Mapping[str, str]) -> int:
    if config.preload and config.workers:
        # Imported here, in the master, before binding: the workers forked later
        # find it in sys.modules (its memory shared copy-on-write), and an import
        # error ends the run at once, with the loader's exit status.
        try:
            load_target(config.target)
        except TargetError as exc:
            return _error(exc.exit_code, exc)
    try:
        listeners = resolve_listeners(config)
    except ListenerError as exc:
        return _error(ExitCode.BIND, exc)
    try:

        def reload() -> RunConfig:
            new = config_from_args(args, base)
            apply_env_file(new, base)
            return new

        check_descriptors(config, listeners)
        if config.workers == 0:
            return serve_in_process(config, listeners, reload)
        return Master(config, listeners, reload_config=reload).run()
    finally:
        close_listeners(listeners)
