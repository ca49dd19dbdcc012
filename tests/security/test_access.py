"""allow / deny: clients refused by address (or, on Unix sockets, uid/gid) before any handler."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
from typing import Any

import pytest

import sockserve
from helpers.clients import closed_by_peer, connect, recv_line, short_tempdir
from sockserve.security.access import AccessRules
from sockserve.testing import serving

WAIT = 10.0


def _echo_once(ran: queue.Queue[str]) -> tuple[type[Any], type[Any]]:
    class Echo(sockserve.StreamRequestHandler):
        def handle(self) -> None:
            ran.put("handler")
            self.wfile.write(self.rfile.readline())

    class AsyncEcho(sockserve.AsyncStreamRequestHandler):
        async def handle(self) -> None:
            ran.put("handler")
            self.writer.write(await self.reader.readline())

    return Echo, AsyncEcho


KINDS = ["TCPServer", "ThreadingTCPServer", "ThreadPoolTCPServer", "ForkingTCPServer", "Async"]


def _server(kind: str, ran: queue.Queue[str], address: Any = None, **options: Any) -> Any:
    echo, async_echo = _echo_once(ran)
    address = address if address is not None else ("127.0.0.1", 0)
    if kind == "Async":
        return sockserve.AsyncTCPServer(address, async_echo, event_loop="asyncio", **options)
    cls = getattr(sockserve, kind)
    return cls(address, echo, **options)


@pytest.mark.parametrize("kind", KINDS)
def test_a_denied_client_is_closed_before_any_handler_code(kind: str) -> None:
    ran: queue.Queue[str] = queue.Queue()
    server = _server(kind, ran, deny=["127.0.0.0/8"])
    with serving(server):
        with connect(server.server_address) as client:
            client.sendall(b"hello\n")
            assert closed_by_peer(client) in ("eof", "reset")
        assert server.wait_for(lambda st: st.rejected.get("deny") == 1, WAIT), server.stats()
        stats = server.stats()
        assert stats.accepted == 0 and stats.active == 0
    assert ran.empty()


@pytest.mark.parametrize("kind", KINDS)
def test_allow_serves_only_the_listed_networks(kind: str) -> None:
    ran: queue.Queue[str] = queue.Queue()
    server = _server(kind, ran, allow=["127.0.0.2/32"])
    with serving(server):
        with connect(server.server_address, source_ip="127.0.0.2") as allowed:
            allowed.sendall(b"in\n")
            assert recv_line(allowed) == b"in\n"
        with connect(server.server_address, source_ip="127.0.0.3") as other:
            assert closed_by_peer(other) in ("eof", "reset")
        assert server.wait_for(lambda st: st.rejected.get("not_allowed") == 1, WAIT)


def test_deny_wins_over_allow() -> None:
    rules = AccessRules.parse(allow=["10.0.0.0/8"], deny=["10.1.0.0/16"])
    assert rules.verdict(("10.2.0.1", 1), frozenset()) is None
    assert rules.verdict(("10.1.0.1", 1), frozenset()) == "deny"
    assert rules.verdict(("192.0.2.1", 1), frozenset()) == "not_allowed"


def test_ipv4_mapped_addresses_match_ipv4_rules() -> None:
    rules = AccessRules.parse(allow=[], deny=["10.0.0.0/8"])
    assert rules.verdict(("::ffff:10.0.0.7", 1, 0, 0), frozenset()) == "deny"
    assert rules.verdict(("::1", 1, 0, 0), frozenset()) is None


def test_an_empty_allow_list_allows_everyone() -> None:
    rules = AccessRules.parse(allow=[], deny=[])
    assert not rules.restricts
    assert rules.verdict(("203.0.113.9", 1), frozenset()) is None


def test_bad_rules_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="deny"):
        sockserve.TCPServer(("127.0.0.1", 0), sockserve.StreamRequestHandler, deny=["10.0.0.300"])
    with pytest.raises(ValueError, match="allow"):
        sockserve.TCPServer(("127.0.0.1", 0), sockserve.StreamRequestHandler, allow="10.0.0.1")


@pytest.mark.parametrize("verdict", ["allowed", "denied"])
def test_unix_sockets_are_judged_by_the_peers_uid(verdict: str) -> None:
    ran: queue.Queue[str] = queue.Queue()
    me = f"uid:{os.getuid()}"
    options = {"allow": [me]} if verdict == "allowed" else {"deny": [me]}
    echo, _ = _echo_once(ran)
    with short_tempdir() as tmp:
        path = os.path.join(tmp, "s")
        server = sockserve.ThreadingUnixStreamServer(path, echo, **options)
        with serving(server), socket.socket(socket.AF_UNIX) as client:
            client.settimeout(WAIT)
            client.connect(path)
            if verdict == "allowed":
                client.sendall(b"me\n")
                assert recv_line(client) == b"me\n"
            else:
                # The refusal may come first: on a Unix socket, writing then fails.
                with contextlib.suppress(BrokenPipeError):
                    client.sendall(b"me\n")
                assert closed_by_peer(client) in ("eof", "reset")
                assert server.wait_for(lambda st: st.rejected.get("deny") == 1, WAIT)
