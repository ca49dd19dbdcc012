"""The wire fixtures in ``data/`` and the checks the PROXY parser tests share.

``data/haproxy.json`` lists headers recorded from a real HAProxy
(``capture_haproxy.py``); ``data/cases.json`` the specification's examples,
cloud load balancer shapes and malformed input. Each entry names a ``.bin``
file holding the bytes a server would receive (often the header followed by
application data) and either ``expect`` (fields of the parsed header) or
``error`` (a fragment of the ProxyHeaderError message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sockserve.protocols.proxy import (
    AddressFamily,
    Command,
    Mode,
    NeedData,
    ProxyHeader,
    TransportProtocol,
    parse_proxy_header,
)

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    mode: Mode
    comment: str
    expect: dict[str, Any] | None
    error: str | None

    def __str__(self) -> str:
        return self.name


def _load(manifest: str) -> list[Case]:
    entries = json.loads((DATA / manifest).read_text(encoding="utf-8"))
    return [
        Case(
            name=name,
            data=(DATA / name).read_bytes(),
            mode=entry.get("mode", "auto"),
            comment=entry["comment"],
            expect=entry.get("expect"),
            error=entry.get("error"),
        )
        for name, entry in entries.items()
    ]


ALL_CASES = _load("haproxy.json") + _load("cases.json")
VALID = [case for case in ALL_CASES if case.expect is not None]
INVALID = [case for case in ALL_CASES if case.error is not None]


def _address(value: Any) -> Any:
    """A JSON address as the parser returns it: lists become tuples, {"bytes": hex} bytes."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return bytes.fromhex(value["bytes"])
    return value


def _text_or_none(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def check_expected(header: ProxyHeader, expect: dict[str, Any]) -> None:
    """Assert every field ``expect`` names; fields it leaves out are not checked."""
    simple = {
        "version": lambda: header.version,
        "command": lambda: header.command.name,
        "family": lambda: header.family.name,
        "transport": lambda: header.transport.name,
        "length": lambda: header.length,
        "proxied": lambda: header.proxied,
        "authority": lambda: header.authority,
        "netns": lambda: header.netns,
    }
    for key, value in expect.items():
        if key in simple:
            assert simple[key]() == value, key
        elif key in ("source", "destination"):
            assert getattr(header, key) == _address(value), key
        elif key == "tlvs":
            assert [[tlv.type, tlv.value.hex()] for tlv in header.tlvs] == value
        elif key in ("alpn", "unique_id"):
            assert getattr(header, key) == _text_or_none(value), key
        elif key == "crc32c":
            assert (header.crc32c is not None) is value
        elif key == "ssl":
            assert header.ssl is not None
            for field, wanted in value.items():
                assert getattr(header.ssl, field) == wanted, f"ssl.{field}"
        else:
            raise AssertionError(f"unknown expectation {key!r}")
    # Invariants of every header, whatever the case says.
    assert isinstance(header.command, Command)
    assert isinstance(header.family, AddressFamily)
    assert isinstance(header.transport, TransportProtocol)
    assert (header.source is None) == (header.destination is None)
    assert header.proxied == (header.source is not None)


def parse_all(data: bytes, mode: Mode = "auto") -> ProxyHeader:
    """Parse ``data``, which must hold a whole header."""
    result = parse_proxy_header(data, mode)
    assert isinstance(result, ProxyHeader), result
    return result


def need(data: bytes, mode: Mode = "auto", **options: Any) -> NeedData:
    """Parse ``data``, which must be a valid beginning of a header."""
    result = parse_proxy_header(data, mode, **options)
    assert isinstance(result, NeedData), result
    return result
