"""Floods: many short connections (resets, over-long lines, failing requests).

Each attack here follows the contract of :mod:`benchmarks.hostile.attacks`
(which re-exports them): keyword parameters, ``ready``/``stop`` events, an
:class:`~benchmarks.hostile.connections.AttackResult` within about
``duration`` seconds. One selector drives every connection in flight, so the
rate is set by the server, not by threads in the harness.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time

from benchmarks.hostile.connections import (
    Address,
    AttackResult,
    attack_events,
    close_all,
    connected,
    reset,
    sock_of,
    start_connect,
)
from benchmarks.hostile.handlers import RAISE

MiB = 1 << 20


# -- connect-and-reset burst -----------------------------------------------------------


def reset_burst(
    address: Address,
    *,
    connections: int,
    duration: float,
    burst_s: float = 1.0,
    in_flight: int = 512,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """``connections`` connects spread over ``burst_s``, each reset (RST) once it is
    established; then nothing until ``duration`` (the server's recovery is watched)."""
    ready, stop = attack_events(ready, stop)
    ready.set()
    started = time.monotonic()
    end = started + duration
    attempted = resets = failed = 0
    burst_took: float | None = None
    selector = selectors.DefaultSelector()
    try:
        while not stop.is_set() and time.monotonic() < end:
            due = min(connections, int((time.monotonic() - started) / burst_s * connections) + 1)
            while attempted < due and len(selector.get_map()) < in_flight:
                sock, result = start_connect(address)
                attempted += 1
                if result == 0:
                    reset(sock)
                    resets += 1
                elif result == errno.EINPROGRESS:
                    selector.register(sock, selectors.EVENT_WRITE)
                else:
                    sock.close()
                    failed += 1
            if attempted >= connections and not selector.get_map():
                burst_took = time.monotonic() - started
                break
            for key, _ in selector.select(0.005):
                sock = sock_of(key)
                selector.unregister(sock)
                if connected(sock):
                    reset(sock)
                    resets += 1
                else:
                    sock.close()
                    failed += 1
    finally:
        unfinished = close_all(selector)
    stop.wait(max(0.0, end - time.monotonic()))
    ended = time.monotonic()
    counts: dict[str, float | int | None] = {
        "connections": connections,
        "attempted": attempted,
        "reset": resets,
        "connect_failed": failed,
        "unfinished": unfinished,
        "burst_took_s": round(burst_took, 3) if burst_took is not None else None,
    }
    took = f"{burst_took:.1f} s" if burst_took is not None else "not finished"
    summary = f"{resets}/{connections} reset in {took}"
    if failed or unfinished:
        summary += f", {failed + unfinished} never connected"
    return AttackResult(counts, summary, ended)


# -- over-long lines -------------------------------------------------------------------


def garbage(
    address: Address,
    *,
    clients: int,
    duration: float,
    size: int = MiB,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """``clients`` connections each send ``size`` bytes without a newline as fast as the
    server takes them, then hold; a connection the server cuts is replaced at once.

    ``completed`` counts connections whose whole ``size`` left this process: on
    loopback the kernel's buffers take a megabyte even from a server that cut
    the line after 64 KiB, so ``cut`` is the telling number.
    """
    ready, stop = attack_events(ready, stop)
    started = time.monotonic()
    end = started + duration
    block = memoryview(b"A" * 65536)
    sent: dict[socket.socket, int] = {}
    selector = selectors.DefaultSelector()
    opened = cut = completed = connect_failed = 0
    bytes_sent = 0

    def open_one() -> None:
        nonlocal opened, connect_failed
        sock, result = start_connect(address)
        if result not in (0, errno.EINPROGRESS):
            sock.close()
            connect_failed += 1
            return
        opened += 1
        sent[sock] = 0
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def drop(sock: socket.socket) -> None:
        nonlocal cut
        cut += 1
        selector.unregister(sock)
        del sent[sock]
        sock.close()

    try:
        for _ in range(clients):
            open_one()
        ready.set()
        while not stop.is_set() and (remaining := end - time.monotonic()) > 0:
            for key, events in selector.select(min(remaining, 0.25)):
                sock = sock_of(key)
                if not sent[sock] and not connected(sock):
                    selector.unregister(sock)
                    del sent[sock]
                    sock.close()
                    connect_failed += 1
                    if connect_failed < clients * 10:
                        open_one()
                    continue
                try:
                    if events & selectors.EVENT_READ and not sock.recv(65536):
                        raise ConnectionAbortedError("eof")
                    if events & selectors.EVENT_WRITE:
                        n = sock.send(block[: size - sent[sock]])
                        sent[sock] += n
                        bytes_sent += n
                        if sent[sock] >= size:
                            completed += 1
                            selector.modify(sock, selectors.EVENT_READ)
                except BlockingIOError:
                    continue
                except OSError:
                    drop(sock)
                    open_one()
        ended = time.monotonic()
        counts: dict[str, float | int | None] = {
            "clients": clients,
            "connections": opened,
            "connect_failed": connect_failed,
            "cut": cut,
            "completed": completed,
            "bytes_sent": bytes_sent,
            "open_at_end": len(sent),
        }
    finally:
        ready.set()
        close_all(selector)  # every socket in ``sent`` is registered there
    summary = f"{opened} connections, {cut} cut, {len(sent)} open at the end"
    if connect_failed:
        summary += f", {connect_failed} never connected"
    return AttackResult(counts, summary, ended)


# -- handler exceptions ----------------------------------------------------------------


def exception_storm(
    address: Address,
    *,
    requests: int,
    duration: float,
    concurrency: int = 32,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> AttackResult:
    """``requests`` connections, ``concurrency`` at a time, each sending the line that
    makes the handler raise and waiting for the server to close."""
    ready, stop = attack_events(ready, stop)
    ready.set()
    started = time.monotonic()
    end = started + duration
    begun = done = failed = 0
    selector = selectors.DefaultSelector()
    try:
        while not stop.is_set() and (remaining := end - time.monotonic()) > 0:
            while begun < requests and len(selector.get_map()) < concurrency:
                sock, result = start_connect(address)
                begun += 1
                if result not in (0, errno.EINPROGRESS):
                    sock.close()
                    failed += 1
                    continue
                selector.register(sock, selectors.EVENT_WRITE)
            if not selector.get_map():
                break
            for key, events in selector.select(min(remaining, 0.25)):
                sock = sock_of(key)
                if events & selectors.EVENT_WRITE:
                    if not connected(sock):
                        selector.unregister(sock)
                        sock.close()
                        failed += 1
                        continue
                    try:
                        sock.send(RAISE)
                    except OSError:
                        pass  # already closed by the server: the read below sees it
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    if sock.recv(4096):
                        continue  # not expected; wait for the close all the same
                except BlockingIOError:
                    continue
                except OSError:
                    pass  # reset: closed all the same
                selector.unregister(sock)
                sock.close()
                done += 1
        ended = time.monotonic()
    finally:
        ready.set()
        unfinished = close_all(selector)
    took = time.monotonic() - started
    counts: dict[str, float | int | None] = {
        "requests": requests,
        "begun": begun,
        "done": done,
        "connect_failed": failed,
        "unfinished": unfinished,
        "took_s": round(took, 3),
    }
    summary = f"{done}/{requests} raised and closed in {took:.1f} s"
    if failed:
        summary += f", {failed} never connected"
    return AttackResult(counts, summary, ended)
