"""Every setting of sockserve, declared once: the servers' options and the runner's settings.

Each :class:`Option` says, in one place: its name (the class attribute and
keyword argument), what values it takes (one validator for every source),
its default for each server family, its help text, and, if the runner
exposes it, its command-line flag, from which the ``SOCKSERVE_*`` variable
and the TOML key follow. Everything reads this table:

* the server classes take their class-attribute defaults from it
  (:func:`family_default`) and validate keyword arguments and class
  attributes through it (:func:`apply_options`);
* the runner (:mod:`sockserve.runner.settings`) reads flags, variables and the
  TOML file through it, with the same validators, so ``--check-config``
  rejects exactly what a run would, and names the setting and its source;
* the command line's ``--help`` and ``docs/cli-reference.md``
  (:mod:`sockserve.cli_reference`) are generated from it.

Server families: ``stdlib`` (the stdlib-named classes: every limit off, as in
``socketserver``), ``pool`` (the thread-pool classes: safe limits on) and
``async`` (the event-loop classes: many connections are the point). The
runner uses the pool's defaults for its sync, thread and fork workers too:
a server started by the runner is exposed to the network.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from sockserve.core.unixfiles import group_id, user_id
from sockserve.strategies.eventloop import EVENT_LOOP_KINDS

__all__ = [
    "FAMILIES",
    "OPTIONS",
    "STREAM_ONLY",
    "Option",
    "ServerOptions",
    "apply_options",
    "family_default",
    "keepalive_problem",
    "option",
]

#: The server families whose defaults differ (see the module doc).
FAMILIES = ("stdlib", "pool", "async")
#: Timeouts beyond this (a year) are surely mistakes, and sockets and poll()
#: reject them anyway (inf, or more than 2**31 ms): use None for "forever".
LONGEST_TIMEOUT = 365 * 24 * 3600.0

_NONE_WORDS = frozenset({"none", "off", "unlimited"})


class Kind:
    """What values an option takes: ``check`` a Python value, ``parse`` the runner's text.

    ``check`` returns the value to store (ints become floats for seconds) or
    raises ``ValueError`` saying what is wrong, without the option's name
    (the caller adds it, with the source it came from).
    """

    optional = False

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def parse_one(self, text: str) -> Any:
        return text

    def parse(self, text: str) -> Any:
        """The value ``text`` (a flag, a variable, a TOML string) stands for."""
        if self.optional and text.strip().lower() in _NONE_WORDS:
            return None
        try:
            return self.parse_one(text.strip())
        except ValueError:
            raise ValueError(self.wanted()) from None

    def wanted(self) -> str:
        raise NotImplementedError


class Count(Kind):
    """A whole number >= ``minimum`` (or None, "none", when ``optional``)."""

    def __init__(self, minimum: int, *, optional: bool = False, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.optional = optional

    def check(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < self.minimum
            or (self.maximum is not None and value > self.maximum)
        ):
            raise ValueError(self.wanted())
        return value

    def parse_one(self, text: str) -> Any:
        return int(text)

    def wanted(self) -> str:
        what = "a positive integer" if self.minimum == 1 else f"an integer >= {self.minimum}"
        if self.maximum is not None:
            what = f"an integer from {self.minimum} to {self.maximum}"
        return "must be " + what + (" or None" if self.optional else "")


class Seconds(Kind):
    """A finite duration: > 0 (``positive``) or >= ``minimum``, under a year; or None."""

    def __init__(
        self,
        minimum: float = 0.0,
        *,
        positive: bool = False,
        optional: bool = False,
        maximum: float | None = None,
    ) -> None:
        self.minimum = minimum
        self.positive = positive
        self.optional = optional
        #: The most the kernel keeps (inclusive); None: anything under a year.
        self.maximum = maximum

    def check(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or math.isnan(value)
            or not (value > 0 if self.positive else value >= self.minimum)
            or not (value < LONGEST_TIMEOUT if self.maximum is None else value <= self.maximum)
        ):
            raise ValueError(self.wanted())
        return float(value)

    def parse_one(self, text: str) -> Any:
        return float(text)

    def wanted(self) -> str:
        low = "> 0" if self.positive else f">= {self.minimum:g}"
        high = "under a year" if self.maximum is None else f"at most {self.maximum:g}"
        return f"must be a finite number of seconds {low} and {high}" + (
            ", or None" if self.optional else ""
        )


class Choice(Kind):
    """One of a few words."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def check(self, value: Any) -> Any:
        if value not in self.choices:
            raise ValueError(self.wanted())
        return value

    def parse_one(self, text: str) -> Any:
        return self.check(text.lower() if text.lower() in self.choices else text)

    def wanted(self) -> str:
        return "must be one of " + ", ".join(repr(c) for c in self.choices)


class Switch(Kind):
    """True or False (text: 1/0, true/false, yes/no, on/off)."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(self.wanted())
        return value

    def parse_one(self, text: str) -> Any:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(lowered)

    def wanted(self) -> str:
        return "must be true or false"


class Text(Kind):
    """A string (a path, a name), or None when ``optional``."""

    def __init__(self, *, optional: bool = True) -> None:
        self.optional = optional

    def check(self, value: Any) -> Any:
        if (value is None and self.optional) or isinstance(value, str):
            return value
        raise ValueError(self.wanted())

    def wanted(self) -> str:
        return "must be a string" + (" or None" if self.optional else "")


class TextList(Kind):
    """Several strings (a repeatable flag; comma-separated in a variable; a TOML list)."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(self.wanted())
        return value

    def parse(self, text: str) -> Any:
        return [part.strip() for part in text.split(",") if part.strip()]

    def wanted(self) -> str:
        return "must be a list of strings"


class AddressRules(Kind):
    """Networks (``10.0.0.0/8``, ``::1``, ``*`` for all) and, with ``ids``, ``uid:N`` / ``gid:N``.

    Kept as a tuple of normalised strings; the access-control step parses
    them once into matchers (:mod:`sockserve.security.access`).
    """

    def __init__(self, *, ids: bool) -> None:
        self.ids = ids

    def check(self, value: Any) -> Any:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(self.wanted())
        return tuple(self._one(item) for item in value)

    def _one(self, item: Any) -> str:
        if not isinstance(item, str):
            raise ValueError(self.wanted())
        text = item.strip()
        if text == "*":
            return text
        if self.ids and text.startswith(("uid:", "gid:")):
            number = text[4:]
            if not number.isdigit():
                raise ValueError(f"{text!r} is not uid:N or gid:N with a number N")
            return f"{text[:4]}{int(number)}"
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a network ({self.wanted()})") from None

    def parse(self, text: str) -> Any:
        return [part.strip() for part in text.split(",") if part.strip()]

    def wanted(self) -> str:
        what = "networks (CIDR or addresses, * for all)"
        return "must be a list of " + what + (", uid:N or gid:N" if self.ids else "")


class FileMode(Kind):
    """Permission bits or a mask, 0 to 0o777 (text is octal: ``660``, ``0o660``), or None.

    Used for ``umask`` and the socket files' ``socket_mode``.
    """

    optional = True

    def check(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
            raise ValueError(self.wanted())
        return value

    def parse_one(self, text: str) -> Any:
        return self.check(int(text.lower().removeprefix("0o"), 8))

    def wanted(self) -> str:
        return "must be an octal mode from 000 to 777 (027, 0o660), or none"


class TLSContext(Kind):
    """An ``ssl.SSLContext`` (server side), or None for plain connections."""

    def check(self, value: Any) -> Any:
        if value is not None and not isinstance(value, ssl.SSLContext):
            raise ValueError(self.wanted())
        return value

    def parse(self, text: str) -> Any:
        raise ValueError("a TLS context is built from --certfile and --keyfile, not given as text")

    def wanted(self) -> str:
        return "must be an ssl.SSLContext or None"


#: The longest keepalive time the kernel takes (TCP_KEEPIDLE, TCP_KEEPINTVL: seconds).
KEEPALIVE_MAX = 32767


class KeepAlive(Kind):
    """TCP keepalive: off (False, None), on (True) or on after this many seconds of silence."""

    optional = True

    def check(self, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if (
            not isinstance(value, int | float)
            or math.isnan(value)
            or not 0 < value <= KEEPALIVE_MAX
        ):
            raise ValueError(self.wanted())
        return float(value)

    def parse_one(self, text: str) -> Any:
        lowered = text.lower()
        if lowered in ("true", "yes", "on"):
            return True
        if lowered in ("false", "no"):
            return False
        return self.check(float(text))

    def wanted(self) -> str:
        return (
            f"must be true, false, or the seconds of silence before the first probe "
            f"(> 0 and at most {KEEPALIVE_MAX})"
        )


def keepalive_problem(value: Callable[[str], Any]) -> str | None:
    """What is wrong with these keepalive options together (``value(name)`` reads one)."""
    if value("tcp_keepalive") in (None, False):
        for name in ("tcp_keepalive_interval", "tcp_keepalive_count"):
            if value(name) is not None:
                return f"{name} needs tcp_keepalive (true, or the seconds before the first probe)"
    return None


class Account(Kind):
    """A user or group: a name that exists, or a number; or None (unchanged)."""

    optional = True

    def __init__(self, what: Literal["user", "group"]) -> None:
        self.what = what
        self.lookup = user_id if what == "user" else group_id

    def check(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
            raise ValueError(self.wanted())
        if isinstance(value, int) and value < 0:
            raise ValueError(self.wanted())
        self.lookup(value)  # ValueError: "no user named ..."
        return value

    def parse_one(self, text: str) -> Any:
        return self.check(text)

    def wanted(self) -> str:
        return f"must be a {self.what} name or number, or None"


# -- the table -------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting: what it is, what it takes, its defaults, and how the runner spells it."""

    name: str
    kind: Kind
    help: str
    #: Default per server family; a single "all" key when the families agree.
    defaults: Mapping[str, Any]
    #: The runner's flag, without the dashes (None: a class attribute only).
    flag: str | None = None
    #: The runner's own default, where it differs from the family's.
    runner_default: Any = field(default=None, compare=False)
    has_runner_default: bool = False
    #: What kind of value the runner reads from text: how ``--help`` shows it.
    metavar: str = "VALUE"
    #: Where ``--help`` lists it.
    group: str = "limits"
    #: Which servers take it: "any", "pool", "async" (their mix-ins define it) or "unix".
    owner: Literal["any", "pool", "async", "unix", "runner"] = "any"
    #: Only meaningful for connections (stream sockets).
    stream_only: bool = False
    #: Several values (a repeatable flag, a TOML list).
    multiple: bool = False
    #: A one-letter flag as well (gunicorn's: -b, -w, -k, -t), with its dash.
    short: str | None = None

    def default(self, family: str) -> Any:
        """The default for a server of ``family`` (``stdlib``, ``pool`` or ``async``)."""
        return self.defaults.get(family, self.defaults.get("all"))

    def runner_value(self, family: str) -> Any:
        """The runner's default when its workers are servers of ``family``."""
        return self.runner_default if self.has_runner_default else self.default(family)

    @property
    def key(self) -> str:
        """The name in TOML files and ``--check-config`` (the flag's, with underscores)."""
        return (self.flag or self.name).replace("-", "_")

    @property
    def env(self) -> str:
        return "SOCKSERVE_" + self.key.upper()

    @property
    def server_option(self) -> bool:
        return self.owner != "runner"

    def validate(self, value: Any) -> Any:
        """The value to store; ValueError naming the option if it is not acceptable."""
        try:
            return self.kind.check(value)
        except ValueError as exc:
            raise ValueError(f"{self.name} {exc}, got {value!r}") from None


def _server(
    name: str,
    kind: Kind,
    help: str,
    *,
    stdlib: Any = None,
    pool: Any = None,
    async_: Any = None,
    all_: Any = None,
    **more: Any,
) -> Option:
    if all_ is not None:
        defaults = {"all": all_}
    else:
        defaults = {"stdlib": stdlib, "pool": pool, "async": async_}
    if "runner_default" in more:
        more["has_runner_default"] = True
    return Option(name, kind, help, defaults, **more)


def _runner(name: str, kind: Kind, help: str, default: Any, **more: Any) -> Option:
    return Option(
        name, kind, help, {"all": default}, flag=name.replace("_", "-"), owner="runner", **more
    )


OPTIONS: tuple[Option, ...] = (
    # -- where and how many --------------------------------------------------------
    _runner(
        "bind",
        TextList(),
        "address to listen on (repeatable): HOST:PORT, [V6]:PORT, :PORT, udp://HOST:PORT, "
        "unix:PATH, fd://N; default 127.0.0.1:0, or the sockets systemd passed",
        [],
        metavar="HOST:PORT",
        group="listening",
        multiple=True,
        short="-b",
    ),
    _runner(
        "workers",
        Count(0),
        "worker processes; 0 serves in this process without a supervisor",
        0,
        metavar="N",
        group="processes",
        short="-w",
    ),
    _runner(
        "worker_class",
        Choice("sync", "threads", "pool", "fork", "async"),
        "how each worker serves connections: sync, threads, pool, fork or async "
        "(an async handler picks async)",
        "pool",
        metavar="CLASS",
        group="processes",
        short="-k",
    ),
    _server(
        "max_workers",
        Count(1),
        "pool worker threads per process: at most this many connections are served at once",
        all_=32,
        flag="threads",
        owner="pool",
        metavar="N",
        group="pool",
    ),
    _server(
        "max_pending",
        Count(0),
        "connections that may wait for a pool thread before the server stops accepting",
        all_=32,
        flag="max-pending",
        owner="pool",
        metavar="N",
        group="pool",
    ),
    _server(
        "eager_workers",
        Count(1),
        "pool threads that start connections at once; beyond them a connection first "
        "waits --grow-after for a busy thread",
        all_=2,
        flag="eager-workers",
        owner="pool",
        metavar="N",
        group="pool",
    ),
    _server(
        "grow_after",
        Seconds(0.0),
        "seconds a queued connection waits for a busy pool thread before another takes it "
        "(0: start every connection at once)",
        all_=0.002,
        flag="grow-after",
        owner="pool",
        metavar="SECONDS",
        group="pool",
    ),
    _server(
        "overflow",
        Choice("block", "reject"),
        "when the pool is full: block (leave clients in the kernel backlog) or reject "
        "(accept and close)",
        all_="block",
        flag="overflow",
        owner="pool",
        metavar="MODE",
        group="pool",
    ),
    _server(
        "dispatch",
        Choice("auto", "immediate", "readable"),
        "readable: a connection takes a pool thread only once it has sent data (silence costs "
        "no thread); immediate: at once; auto: readable, unless the handler speaks first",
        all_="auto",
        flag="dispatch",
        owner="pool",
        stream_only=True,
        metavar="MODE",
        group="pool",
    ),
    _server(
        "first_byte_timeout",
        Seconds(positive=True, optional=True),
        "seconds a new connection may take to send its first byte (when it waits for it)",
        all_=30.0,
        flag="first-byte-timeout",
        owner="pool",
        metavar="SECONDS",
        group="pool",
    ),
    _server(
        "min_rate",
        Seconds(positive=True, optional=True),
        "while connections wait for a pool thread, take a thread back from a client moving "
        "fewer bytes a second than this (slowest first; none: never)",
        all_=256.0,
        flag="min-rate",
        owner="pool",
        stream_only=True,
        metavar="BYTES",
        group="pool",
    ),
    _server(
        "min_rate_grace",
        Seconds(positive=True),
        "seconds a pool thread may wait on a slower client before --min-rate applies",
        all_=1.0,
        flag="min-rate-grace",
        owner="pool",
        stream_only=True,
        metavar="SECONDS",
        group="pool",
    ),
    _server(
        "socket_mode",
        FileMode(),
        "permissions of the Unix socket files created, octal (660: the owner and group may "
        "connect; none: the umask's); the file appears with them, never without",
        all_=None,
        flag="socket-mode",
        owner="unix",
        metavar="MODE",
        group="listening",
    ),
    _server(
        "socket_owner",
        Account("user"),
        "owner of the Unix socket files created: a user name or uid (root only; none: this "
        "process's user)",
        all_=None,
        flag="socket-owner",
        owner="unix",
        metavar="USER",
        group="listening",
    ),
    _server(
        "socket_group",
        Account("group"),
        "group of the Unix socket files created: a group name or gid (one of this process's "
        "groups, or any for root; none: this process's group)",
        all_=None,
        flag="socket-group",
        owner="unix",
        metavar="GROUP",
        group="listening",
    ),
    _server(
        "event_loop",
        Choice(*EVENT_LOOP_KINDS),
        "event loop of the async worker class: auto (uvloop when installed), asyncio or uvloop",
        all_="auto",
        flag="event-loop",
        owner="async",
        metavar="LOOP",
        group="async",
    ),
    # -- limits --------------------------------------------------------------------------
    _server(
        "max_connections",
        Count(1, optional=True),
        "concurrent connections per process; more are refused (none: no limit)",
        stdlib=None,
        pool=4096,
        async_=10000,
        flag="max-connections",
        stream_only=True,
        metavar="N",
    ),
    _server(
        "max_connections_per_ip",
        Count(1, optional=True),
        "concurrent connections per client IP address; more are refused (none: no limit)",
        all_=None,
        flag="max-per-ip",
        stream_only=True,
        metavar="N",
    ),
    _server(
        "idle_timeout",
        Seconds(positive=True, optional=True),
        "seconds a read or write may wait with no byte moving before the handler gets "
        "TimeoutError (none: forever)",
        stdlib=None,
        pool=300.0,
        async_=300.0,
        flag="idle-timeout",
        stream_only=True,
        metavar="SECONDS",
    ),
    _server(
        "max_line",
        Count(1, optional=True),
        "longest line (bytes, newline included) a handler's readline() returns before "
        "LineTooLong (none: unbounded)",
        stdlib=None,
        pool=65536,
        async_=65536,
        flag="max-line",
        stream_only=True,
        metavar="BYTES",
    ),
    _server(
        "tcp_nodelay",
        Switch(),
        "set TCP_NODELAY on accepted TCP connections (no Nagle delay on small writes)",
        stdlib=False,
        pool=True,
        async_=True,
        flag="tcp-nodelay",
        stream_only=True,
        group="connections",
    ),
    _server(
        "tcp_keepalive",
        KeepAlive(),
        "TCP keepalive on accepted connections: true (probes after the kernel's idle time, "
        "2 h by default) or the seconds of silence before the first probe; finds dead peers",
        all_=None,
        flag="tcp-keepalive",
        stream_only=True,
        metavar="SECONDS",
        group="connections",
    ),
    _server(
        "tcp_keepalive_interval",
        Seconds(positive=True, optional=True, maximum=KEEPALIVE_MAX),
        "seconds between keepalive probes (none: the kernel's, 75 s)",
        all_=None,
        flag="tcp-keepalive-interval",
        stream_only=True,
        metavar="SECONDS",
        group="connections",
    ),
    _server(
        "tcp_keepalive_count",
        Count(1, optional=True, maximum=127),
        "unanswered keepalive probes before the connection is dropped (none: the kernel's, 9)",
        all_=None,
        flag="tcp-keepalive-count",
        stream_only=True,
        metavar="N",
        group="connections",
    ),
    _server(
        "tcp_user_timeout",
        Seconds(positive=True, optional=True, maximum=2147483.0),
        "seconds written data may stay unacknowledged before the kernel drops the connection "
        "(TCP_USER_TIMEOUT: black-holed writes; none: the kernel's retries, ~15 min)",
        all_=None,
        flag="tcp-user-timeout",
        stream_only=True,
        metavar="SECONDS",
        group="connections",
    ),
    _server(
        "access_log",
        Switch(),
        "log one line per connection: peer, outcome, duration, bytes in and out",
        all_=False,
        flag="access-log",
        runner_default=True,
        group="logging",
    ),
    # -- access control and the PROXY protocol ------------------------------------------
    _server(
        "allow",
        AddressRules(ids=True),
        "only these clients are served (repeatable): CIDR, address, * for all; on Unix "
        "sockets uid:N / gid:N; empty: everyone; checked on the real client after a PROXY "
        "header",
        all_=(),
        flag="allow",
        multiple=True,
        metavar="CIDR",
        group="access",
    ),
    _server(
        "deny",
        AddressRules(ids=True),
        "these clients are refused before any handler code runs (repeatable; wins over --allow)",
        all_=(),
        flag="deny",
        multiple=True,
        metavar="CIDR",
        group="access",
    ),
    _server(
        "proxy_protocol",
        Choice("off", "v1", "v2", "auto"),
        "read a PROXY protocol header (HAProxy's, v1 text or v2 binary; auto: either) from "
        "trusted peers, and serve the client it names",
        all_="off",
        flag="proxy-protocol",
        stream_only=True,
        metavar="MODE",
        group="access",
    ),
    _server(
        "proxy_trusted",
        AddressRules(ids=False),
        "the load balancers allowed to send a PROXY header (repeatable; * for all); the "
        "header is required from them and never read from anyone else",
        all_=("127.0.0.1/32", "::1/128"),
        flag="proxy-allow",
        stream_only=True,
        multiple=True,
        metavar="CIDR",
        group="access",
    ),
    _server(
        "proxy_untrusted",
        Choice("serve", "refuse"),
        "a connection from a peer not in --proxy-allow: serve it as itself (its bytes are "
        "data, never a header), or refuse it",
        all_="serve",
        flag="proxy-untrusted",
        stream_only=True,
        metavar="WHAT",
        group="access",
    ),
    _server(
        "proxy_header_timeout",
        Seconds(positive=True),
        "seconds a trusted peer may take to send its PROXY header",
        all_=5.0,
        flag="proxy-header-timeout",
        stream_only=True,
        metavar="SECONDS",
        group="access",
    ),
    # -- TLS -----------------------------------------------------------------------------
    _server(
        "ssl_context",
        TLSContext(),
        "an ssl.SSLContext to serve TLS with (the runner builds it from --certfile)",
        all_=None,
        stream_only=True,
        group="tls",
    ),
    _server(
        "handshake_timeout",
        Seconds(positive=True),
        "seconds a TLS handshake may take",
        all_=10.0,
        flag="handshake-timeout",
        stream_only=True,
        metavar="SECONDS",
        group="tls",
    ),
    _runner(
        "certfile",
        Text(),
        "serve TLS with this certificate (PEM; the chain after it); on every stream listener, "
        "or only the tls:// ones if any",
        None,
        metavar="PATH",
        group="tls",
    ),
    _runner(
        "keyfile", Text(), "the certificate's private key (PEM)", None, metavar="PATH", group="tls"
    ),
    _runner(
        "keyfile_password",
        Text(),
        "the private key's password (better: --keyfile-password-file or the variable)",
        None,
        metavar="TEXT",
        group="tls",
    ),
    _runner(
        "keyfile_password_file",
        Text(),
        "a file holding the private key's password (first line)",
        None,
        metavar="PATH",
        group="tls",
    ),
    _runner(
        "ca_certs",
        Text(),
        "CA certificates (PEM) client certificates are checked against (mutual TLS)",
        None,
        metavar="PATH",
        group="tls",
    ),
    _runner(
        "cert_reqs",
        Choice("none", "optional", "required"),
        "ask clients for a certificate: none, optional or required (mutual TLS)",
        "none",
        metavar="MODE",
        group="tls",
    ),
    _runner(
        "ciphers",
        Text(),
        "OpenSSL cipher list for TLS 1.2 (default: the ssl module's secure defaults)",
        None,
        metavar="LIST",
        group="tls",
    ),
    _runner(
        "tls_min_version",
        Choice("1.2", "1.3"),
        "the oldest TLS version served",
        "1.2",
        metavar="VERSION",
        group="tls",
    ),
    _runner(
        "alpn",
        TextList(),
        "ALPN protocols offered, in order of preference, comma-separated (h2,http/1.1)",
        [],
        metavar="LIST",
        group="tls",
    ),
    # -- the target ------------------------------------------------------------------------
    _runner(
        "chdir",
        Text(),
        "change to this directory before loading the target; the working directory is on "
        "the import path either way, and relative paths (--pid-file, unix:PATH) resolve in it",
        None,
        metavar="PATH",
        group="target",
    ),
    _runner(
        "preload",
        Switch(),
        "import the target in the master before forking the workers (memory shared "
        "copy-on-write, import errors caught before any worker); SIGHUP then keeps the old code",
        False,
        group="target",
    ),
    _runner(
        "reload",
        Switch(),
        "for development: restart a worker when a source file it loaded changes (polled every "
        "second; the standard library and site-packages are not watched)",
        False,
        group="target",
    ),
    _runner(
        "env_file",
        Text(),
        "set the variables of this file (KEY=VALUE lines) for the target, unless already set; "
        "SOCKSERVE_* ones there are settings too",
        None,
        metavar="PATH",
        group="target",
    ),
    # -- privileges and files ------------------------------------------------------------
    _runner(
        "user",
        Text(),
        "run the workers as this user (name or uid) once the master has bound, written the "
        "pid file and each worker has read the TLS key; needs root",
        None,
        metavar="USER",
        group="privileges",
    ),
    _runner(
        "group",
        Text(),
        "run the workers with this group (name or gid); default: --user's primary group",
        None,
        metavar="GROUP",
        group="privileges",
    ),
    _runner(
        "umask",
        FileMode(),
        "file mode mask set at start, before the pid file and unix: socket files are made "
        "(octal; none: inherit the caller's)",
        None,
        metavar="MODE",
        group="privileges",
    ),
    # -- the runner's processes ----------------------------------------------------------
    _runner(
        "grace",
        Seconds(0.0),
        "seconds a graceful stop lets connections in flight finish",
        30.0,
        metavar="SECONDS",
        group="processes",
    ),
    _runner(
        "backlog",
        Count(1),
        "the listen queue of each TCP and Unix listener: connections the kernel holds "
        "before one is accepted (capped by net.core.somaxconn)",
        socket.SOMAXCONN,
        metavar="N",
        group="listening",
    ),
    _runner(
        "reuse_port",
        Switch(),
        "a listening socket of its own per worker, with SO_REUSEPORT: the kernel spreads "
        "connections over them; refused on a port another process listens on",
        False,
        group="listening",
    ),
    _runner(
        "reuse_port_overlap",
        Switch(),
        "with --reuse-port, start even if another process listens on the port, and share "
        "its connections (a blue/green restart of a whole instance)",
        False,
        group="listening",
    ),
    _runner(
        "worker_timeout",
        Seconds(0.1, optional=True),
        "kill and replace a worker whose serving loop shows no progress for this long "
        "(none: never)",
        30.0,
        metavar="SECONDS",
        group="processes",
        short="-t",
    ),
    _runner(
        "max_requests",
        Count(0),
        "recycle a worker after this many connections (0: never)",
        0,
        metavar="N",
        group="processes",
    ),
    _runner(
        "max_requests_jitter",
        Count(0),
        "add up to this many to max_requests per worker, so workers do not recycle together",
        0,
        metavar="N",
        group="processes",
    ),
    _runner(
        "pid_file",
        Text(),
        "write the master's pid to this file and hold it locked while running; a file "
        "locked by a running server is refused",
        None,
        metavar="PATH",
        group="processes",
    ),
    _runner(
        "shutdown_delay",
        Seconds(0.0),
        "on SIGTERM, keep accepting this long while /healthz answers 503, then drain "
        "(load balancers stop sending first)",
        0.0,
        metavar="SECONDS",
        group="processes",
    ),
    # -- metrics ------------------------------------------------------------------------
    _runner(
        "metrics_bind",
        Text(),
        "serve Prometheus /metrics and /healthz on this HOST:PORT, for all workers "
        "(needs sockserve[metrics])",
        None,
        metavar="HOST:PORT",
        group="processes",
    ),
    _runner(
        "log_level",
        Choice("debug", "info", "warning", "error", "critical"),
        "log level: debug, info, warning, error or critical",
        "info",
        metavar="LEVEL",
        group="logging",
    ),
    _runner(
        "log_config",
        Text(),
        "a logging.config dictConfig file (JSON or TOML); the other logging settings are "
        "then ignored",
        None,
        metavar="PATH",
        group="logging",
    ),
    _runner(
        "log_format",
        Choice("text", "json"),
        "text: TIME [PID] LEVEL LOGGER: MESSAGE; json: one JSON object per line",
        "text",
        metavar="FORMAT",
        group="logging",
    ),
    _runner(
        "access_logfile",
        Text(),
        "write the access log to this file (appended to, reopened on SIGUSR1), or - for "
        "stdout; default: with the error log",
        None,
        metavar="PATH",
        group="logging",
    ),
    _runner(
        "error_logfile",
        Text(),
        "write the error log (every other line) to this file (appended to, reopened on "
        "SIGUSR1), or - for stderr (the default)",
        None,
        metavar="PATH",
        group="logging",
    ),
)

_BY_NAME = {opt.name: opt for opt in OPTIONS}

#: Options that only make sense for connections (stream sockets).
STREAM_ONLY = frozenset(opt.name for opt in OPTIONS if opt.stream_only)
# (access_log works for datagram servers too: one line per datagram handled.)


def _is_default(name: str, value: Any) -> bool:
    """Whether ``value`` is the option's own default (which a datagram server ignores)."""
    return bool(value == _BY_NAME[name].default("stdlib"))


def option(name: str) -> Option:
    """The declaration of option ``name`` (KeyError if there is none)."""
    return _BY_NAME[name]


def family_default(name: str, family: str) -> Any:
    """The default of option ``name`` for a server of ``family``: what class attributes use."""
    return _BY_NAME[name].default(family)


class ServerOptions(TypedDict, total=False):
    """Keyword-only constructor arguments accepted by sockserve servers (see ``OPTIONS``)."""

    max_connections: int | None
    max_connections_per_ip: int | None
    idle_timeout: float | None
    max_line: int | None
    access_log: bool
    tcp_nodelay: bool
    tcp_keepalive: bool | float | None
    tcp_keepalive_interval: float | None
    tcp_keepalive_count: int | None
    tcp_user_timeout: float | None
    max_workers: int
    max_pending: int
    eager_workers: int
    grow_after: float
    overflow: Literal["block", "reject"]
    dispatch: Literal["auto", "immediate", "readable"]
    min_rate: float | None
    min_rate_grace: float
    first_byte_timeout: float | None
    event_loop: Literal["auto", "asyncio", "uvloop"]
    allow: Sequence[str]
    deny: Sequence[str]
    proxy_protocol: Literal["off", "v1", "v2", "auto"]
    proxy_trusted: Sequence[str]
    proxy_untrusted: Literal["serve", "refuse"]
    proxy_header_timeout: float
    ssl_context: ssl.SSLContext | None
    handshake_timeout: float
    socket_mode: int | None
    socket_owner: int | str | None
    socket_group: int | str | None


_OWNER_TEXT = {
    "async": "async servers (AsyncMixIn)",
    "pool": "pool servers (ThreadPoolMixIn)",
    "unix": "Unix socket servers (UnixStreamServer, UnixDatagramServer and their variants)",
}


def apply_options(server: object, options: dict[str, object]) -> None:
    """Validate ``options`` and the class-level defaults, then set the options on ``server``.

    Raises ``TypeError`` for an option the server does not have and
    ``ValueError`` for a bad value; both messages name the option.
    """
    cls = type(server)
    for name, value in options.items():
        declared = _BY_NAME.get(name)
        if declared is None or not declared.server_option:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
        if not hasattr(cls, name):
            owner = _OWNER_TEXT.get(declared.owner, "other servers")
            raise TypeError(f"{cls.__name__}() does not take {name!r}: it is an option of {owner}")
        setattr(server, name, declared.validate(value))
    for declared in OPTIONS:
        name = declared.name
        if name in options or not declared.server_option or not hasattr(cls, name):
            continue
        setattr(server, name, declared.validate(getattr(cls, name)))
    problem = keepalive_problem(lambda name: getattr(server, name, None))
    if problem:
        raise ValueError(problem)
    if getattr(server, "socket_type", socket.SOCK_STREAM) == socket.SOCK_DGRAM:
        for name in sorted(STREAM_ONLY):
            value = getattr(server, name, None)
            harmless = value in (None, False, (), "immediate") or _is_default(name, value)
            if not harmless:
                raise ValueError(
                    f"{name}={value!r} applies to stream servers only; "
                    f"{cls.__name__} is a datagram server"
                )
