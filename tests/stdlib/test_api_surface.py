"""sockserve's public surface against the installed stdlib ``socketserver``.

Names, class attributes and their defaults, method signatures and the class
hierarchy must match, so that ``import sockserve as socketserver`` runs code
written for the stdlib. The one intended difference in defaults,
``request_queue_size``, is asserted separately.
"""

from __future__ import annotations

import inspect
import socket
import socketserver
from typing import Any

import pytest

import sockserve

# Python 3.12 added these to the stdlib; sockserve has them on every version.
_FORKING_UNIX = {
    "ForkingUnixStreamServer": (socketserver.ForkingMixIn, socketserver.UnixStreamServer),
    "ForkingUnixDatagramServer": (socketserver.ForkingMixIn, socketserver.UnixDatagramServer),
}


def _stdlib_class(name: str) -> type[Any]:
    """The stdlib's class, or for the Forking Unix servers on 3.11 what 3.12 defines."""
    if hasattr(socketserver, name):
        return getattr(socketserver, name)  # type: ignore[no-any-return]
    return type(name, _FORKING_UNIX[name], {})


STDLIB_NAMES = sorted(set(socketserver.__all__) | set(_FORKING_UNIX))
STDLIB_CLASSES = {name: _stdlib_class(name) for name in STDLIB_NAMES}

# The configuration attributes a subclass of a stdlib class may set.
KNOWN_ATTRIBUTES = {
    "timeout",
    "address_family",
    "socket_type",
    "allow_reuse_address",
    "allow_reuse_port",
    "request_queue_size",
    "max_packet_size",
    "daemon_threads",
    "block_on_close",
    "max_children",
    "active_children",
    "rbufsize",
    "wbufsize",
    "disable_nagle_algorithm",
}
# sockserve's only intentional change to a stdlib default.
DIFFERENT_ON_PURPOSE = {"request_queue_size"}


def _public_attributes(cls: type[Any]) -> dict[str, Any]:
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and not callable(getattr(cls, name))
    }


def _public_methods(cls: type[Any]) -> dict[str, Any]:
    methods = {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name))
    }
    methods["__init__"] = cls.__init__
    return methods


ATTRIBUTE_NAMES = {
    name: sorted(set(_public_attributes(cls)) - DIFFERENT_ON_PURPOSE)
    for name, cls in STDLIB_CLASSES.items()
}


def test_all_covers_the_stdlib_all() -> None:
    assert set(socketserver.__all__) <= set(sockserve.__all__)
    assert set(_FORKING_UNIX) <= set(sockserve.__all__)


def test_all_has_no_duplicates_and_every_name_exists() -> None:
    assert len(sockserve.__all__) == len(set(sockserve.__all__))
    missing = [name for name in sockserve.__all__ if not hasattr(sockserve, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from sockserve import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(sockserve.__all__)


def test_every_public_object_reports_module_sockserve() -> None:
    """Our analogue of CPython's ``MiscTestCase.test_all``."""
    for name in sockserve.__all__:
        assert getattr(sockserve, name).__module__ == "sockserve", name
    claimed = {
        name
        for name in dir(sockserve)
        if not name.startswith("_")
        and getattr(getattr(sockserve, name), "__module__", None) == "sockserve"
    }
    assert claimed == set(sockserve.__all__)


def test_the_attribute_comparison_covers_the_known_configuration_attributes() -> None:
    """Guard against the comparison below silently finding nothing to compare."""
    collected = {a for names in ATTRIBUTE_NAMES.values() for a in names} | DIFFERENT_ON_PURPOSE
    assert collected >= KNOWN_ATTRIBUTES


@pytest.mark.parametrize("name", STDLIB_NAMES)
def test_class_attribute_defaults_equal_the_stdlib(name: str) -> None:
    ours = getattr(sockserve, name)
    differences = {}
    for attribute in ATTRIBUTE_NAMES[name]:
        expected = getattr(STDLIB_CLASSES[name], attribute)
        actual = getattr(ours, attribute, "<missing>")
        if actual != expected or type(actual) is not type(expected):
            differences[attribute] = (actual, expected)
    assert differences == {}


@pytest.mark.parametrize(
    "name", [n for n in STDLIB_NAMES if hasattr(STDLIB_CLASSES[n], "request_queue_size")]
)
def test_request_queue_size_is_somaxconn_on_purpose(name: str) -> None:
    assert STDLIB_CLASSES[name].request_queue_size == 5
    assert getattr(sockserve, name).request_queue_size == socket.SOMAXCONN


def _signature_problems(name: str, method: str) -> list[str]:
    """How sockserve's method fails to accept every call the stdlib's accepts."""
    ours = getattr(getattr(sockserve, name), method, None)
    if not callable(ours):
        return [f"{method}: missing"]
    expected = inspect.signature(getattr(STDLIB_CLASSES[name], method)).parameters
    actual = inspect.signature(ours).parameters
    problems = []
    for parameter in expected.values():
        mine = actual.get(parameter.name)
        if mine is None:
            problems.append(f"{method}: no parameter {parameter.name!r}")
        elif mine.kind != parameter.kind or mine.default != parameter.default:
            problems.append(f"{method}: {mine} instead of {parameter}")
    positional_kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    stdlib_positional = [p.name for p in expected.values() if p.kind in positional_kinds]
    positional = [p.name for p in actual.values() if p.kind in positional_kinds]
    if positional[: len(stdlib_positional)] != stdlib_positional:
        problems.append(f"{method}: positional parameters {positional} vs {stdlib_positional}")
    for extra in positional[len(stdlib_positional) :]:
        if actual[extra].default is inspect.Parameter.empty:
            problems.append(f"{method}: new required parameter {extra!r}")
    return problems


@pytest.mark.parametrize("name", STDLIB_NAMES)
def test_methods_accept_the_stdlib_signatures(name: str) -> None:
    """Every stdlib method exists; each stdlib parameter keeps its kind and default."""
    methods = _public_methods(STDLIB_CLASSES[name])
    assert methods  # every class has at least __init__
    problems = [p for method in sorted(methods) for p in _signature_problems(name, method)]
    assert problems == []


@pytest.mark.parametrize("name", STDLIB_NAMES)
def test_class_hierarchy_mirrors_the_stdlib(name: str) -> None:
    """The public classes a class derives from are the stdlib's, no more, no fewer."""
    expected = {o for o in STDLIB_NAMES if issubclass(STDLIB_CLASSES[name], STDLIB_CLASSES[o])}
    ours = getattr(sockserve, name)
    actual = {o for o in STDLIB_NAMES if issubclass(ours, getattr(sockserve, o))}
    assert actual == expected


@pytest.mark.parametrize("name", STDLIB_NAMES)
def test_method_resolution_order_of_public_classes_matches(name: str) -> None:
    """Mix-ins come first, as in the stdlib, so their overrides win."""
    public = set(STDLIB_NAMES)
    expected = [c.__name__ for c in STDLIB_CLASSES[name].__mro__ if c.__name__ in public]
    actual = [c.__name__ for c in getattr(sockserve, name).__mro__ if c.__name__ in public]
    assert actual == expected


def test_some_known_relations() -> None:
    """The parametrized comparison above, spelled out for the relations code relies on."""
    assert issubclass(sockserve.UDPServer, sockserve.TCPServer)
    assert issubclass(sockserve.TCPServer, sockserve.BaseServer)
    assert issubclass(sockserve.ThreadingTCPServer, sockserve.ThreadingMixIn)
    assert issubclass(sockserve.ThreadingTCPServer, sockserve.TCPServer)
    assert issubclass(sockserve.ForkingUDPServer, sockserve.ForkingMixIn)
    assert issubclass(sockserve.UnixDatagramServer, sockserve.UDPServer)
    assert issubclass(sockserve.UnixStreamServer, sockserve.TCPServer)
    assert issubclass(sockserve.ForkingUnixStreamServer, sockserve.UnixStreamServer)
    assert issubclass(sockserve.DatagramRequestHandler, sockserve.BaseRequestHandler)
    assert not issubclass(sockserve.UnixStreamServer, sockserve.UDPServer)
    assert not issubclass(sockserve.ThreadingMixIn, sockserve.BaseServer)
