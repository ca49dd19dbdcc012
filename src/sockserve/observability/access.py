"""One access-log line per connection: peer, outcome, duration, bytes in and out.

The byte counts come from the kernel (``TCP_INFO``'s ``tcpi_bytes_received``
and ``tcpi_bytes_sent``), read once when the connection ends, so counting
costs nothing per byte and works whatever the handler does with the socket.
Other sockets (Unix) show ``-``.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from typing import Any

from sockserve.observability.logs import describe_address

__all__ = ["access_logger", "log_access", "tcp_byte_counts"]

#: One line per connection, at INFO. Turn it off with the ``access_log`` option
#: or by raising this logger's level (then nothing is computed for it).
access_logger = logging.getLogger("sockserve.access")

# Offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h).
_BYTES_RECEIVED = 128  # __u64 tcpi_bytes_received (Linux 4.1+)
_BYTES_ACKED = 120  # __u64 tcpi_bytes_acked (Linux 4.1+)
_BYTES_SENT = 200  # __u64 tcpi_bytes_sent, then tcpi_bytes_retrans (Linux 4.19+)
_TCP_INFO_SIZE = 216
# tcpi_state values (the first byte) in which the peer's FIN has surely arrived:
# CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT.
_FIN_RECEIVED_STATES = frozenset({8, 9, 11, 6})
# CLOSE: after a FIN exchange (when our side had shut down writing), or after a
# reset, with or without a FIN before it. See _fin_before_close.
_CLOSE = 7


def tcp_byte_counts(sock: Any, *, reset: bool | None = None) -> tuple[int, int] | None:
    """(bytes received, bytes sent) of a TCP socket, from the kernel; None if unknown.

    ``sock`` is a socket, or anything with its ``getsockopt`` (an async
    handler's view of its connection's socket). ``reset``: whether the
    connection is known to have ended with a reset (its outcome), which tells
    how to read a closed socket's counter (None: not known).

    The one reader of these counters (the access log, the metrics'
    histograms, the slow-client guard), cheap enough for every connection: it
    asks the kernel at once and lets a socket that is not TCP fail, instead of
    first reading ``sock.family`` (an enum conversion that costs as much as
    the ``getsockopt`` itself).
    """
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, AttributeError, TypeError):
        return None  # not a TCP socket (Unix, a datagram's tuple), or closed already
    if len(info) < _BYTES_RECEIVED + 8:
        return None
    (received,) = _U64.unpack_from(info, _BYTES_RECEIVED)
    if info[0] in _FIN_RECEIVED_STATES or (info[0] == _CLOSE and _fin_before_close(sock, reset)):
        received = max(0, received - 1)  # the peer's FIN takes a sequence number, no byte
    if len(info) >= _BYTES_SENT + 16:
        sent, retransmitted = _TWO_U64.unpack_from(info, _BYTES_SENT)
        return received, sent - retransmitted
    (acked,) = _U64.unpack_from(info, _BYTES_ACKED)
    return received, acked


_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_U64 = struct.Struct("Q")
_TWO_U64 = struct.Struct("QQ")


def _fin_before_close(sock: Any, reset: bool | None) -> bool:
    """Whether a socket in state CLOSE (still open on our side) had received the peer's FIN.

    Our end is still open, so CLOSE came from a reset, or from a FIN after
    the handler shut its side down. The kernel records a reset as the
    socket's error: EPIPE if the peer's FIN had come first, ECONNRESET if
    not; when the handler has read that error already, the outcome says
    whether the connection was reset. A peer that closes with data unread
    sends a reset and no FIN (a chargen client does), so without either
    clue a reset (no FIN) is assumed. Left over: a peer that half-closed,
    then reset, once the handler has read the error, counts one byte high.
    """
    try:
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError:
        error = 0
    if error == errno.EPIPE:
        return True
    if error == errno.ECONNRESET:
        return False
    return reset is False


def log_access(
    request: object,
    client_address: object,
    outcome: str,
    duration: float | None,
    counts: tuple[int, int] | None = None,
) -> None:
    """Write the access line for a request that is ending (its socket still open).

    The fields also travel as attributes of the record (``extra``): a JSON
    formatter writes them as keys of their own (``client``, ``outcome``,
    ``duration`` in seconds, ``rx`` and ``tx`` in bytes; null when unknown),
    so a log shipper never parses the message.
    """
    if not access_logger.isEnabledFor(logging.INFO):
        return
    if counts is None and hasattr(request, "getsockopt"):
        counts = tcp_byte_counts(request, reset=outcome == "reset")
    client = describe_address(client_address)
    rx, tx = counts if counts else (None, None)
    access_logger.info(
        "%s %s %s rx=%s tx=%s",
        client,
        outcome,
        f"{duration:.3f}s" if duration is not None else "-",
        "-" if rx is None else rx,
        "-" if tx is None else tx,
        extra={
            "client": client,
            "outcome": outcome,
            "duration": None if duration is None else round(duration, 6),
            "rx": rx,
            "tx": tx,
        },
    )
