"""Turn ``package.module:Name`` into the thing to serve, or into one clear error.

A target is one of:

* a request handler class (a subclass of ``BaseRequestHandler``, sockserve's
  or the stdlib's, or of ``AsyncStreamRequestHandler``): the runner picks the
  server class from the options (async handlers get the async strategy);
* a server class (a subclass of ``BaseServer``): built as
  ``cls(address, bind_and_activate=False)``, so it must not need more;
* any other callable, a factory: called as ``factory(address)``, it returns a
  server built with ``bind_and_activate=False``;
* the name of a built-in service (``echo``, ``discard``, ``daytime``,
  ``chargen``), which has a handler for streams and one for datagrams.

Each way to fail has its own exception (and exit status): the module does not
import, it has no such name, or the object is none of the above.
"""

from __future__ import annotations

import importlib
import socketserver
import traceback
from dataclasses import dataclass
from typing import Any, Literal

from sockserve.asynchandlers import AsyncStreamRequestHandler
from sockserve.exitcodes import ExitCode
from sockserve.handlers import BaseRequestHandler
from sockserve.servers import BaseServer
from sockserve.services import SERVICES

__all__ = ["Target", "TargetError", "load_target"]

TargetKind = Literal["handler", "server", "factory", "service"]


class TargetError(Exception):
    """The target cannot be loaded; ``exit_code`` says why (see ``ExitCode``)."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    """What to serve: its kind, the object, and the spec it came from."""

    spec: str
    kind: TargetKind
    obj: Any
    #: For services: the handler for datagram listeners (``obj`` serves streams).
    datagram_handler: Any = None
    #: For services: the stream handler written with coroutines.
    async_handler: Any = None

    def handler_for(self, datagram: bool, asynchronous: bool = False) -> Any:
        """The handler class for a stream or a datagram listener (async if asked and known)."""
        if self.kind == "service" and datagram:
            return self.datagram_handler
        if self.kind == "service" and asynchronous:
            return self.async_handler
        return self.obj


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc``'s traceback, if any."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def load_target(spec: str) -> Target:
    """Import and classify ``spec``; raise ``TargetError`` with a one-line message."""
    if spec in SERVICES:
        service = SERVICES[spec]
        return Target(spec, "service", service.stream, service.datagram, service.async_stream)
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise TargetError(
            f"target {spec!r} must look like package.module:Name "
            f"(or be a built-in service: {', '.join(SERVICES)})",
            ExitCode.USAGE,
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise TargetError(
                f"cannot import {module_name!r}: no module named {missing!r}", ExitCode.IMPORT
            ) from exc
        raise _import_failed(module_name, exc) from exc
    except BaseException as exc:  # SyntaxError, SystemExit...: one line, not a traceback
        raise _import_failed(module_name, exc) from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(
                f"module {module_name!r} has no attribute {attr_path!r}", ExitCode.NOT_FOUND
            ) from None
    return Target(spec, _classify(spec, obj), obj)


def _import_failed(module_name: str, exc: BaseException) -> TargetError:
    return TargetError(
        f"importing {module_name!r} failed: {type(exc).__name__}: {exc}{_where(exc)}",
        ExitCode.IMPORT,
    )


def _classify(spec: str, obj: object) -> TargetKind:
    if isinstance(obj, type):
        if issubclass(
            obj, BaseRequestHandler | socketserver.BaseRequestHandler | AsyncStreamRequestHandler
        ):
            return "handler"
        if issubclass(obj, BaseServer | socketserver.BaseServer):
            return "server"
    if callable(obj) and not isinstance(obj, type):
        return "factory"
    raise TargetError(
        f"{spec!r} is {_a(type(obj).__name__)}, not a request handler class, a server class "
        "or a factory function",
        ExitCode.BAD_TARGET,
    )


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: "an int", "a str"."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun
