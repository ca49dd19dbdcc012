"""Listening sockets for the runner: opened once by the master, shared by the workers.

The master opens every listener before any worker exists: binding several
addresses is all-or-nothing, and the error names the address that failed.
Workers receive the sockets across ``fork`` and wrap each in a server. With
``reuse_port`` the master binds (to reserve the port and report errors early)
and opens one more listening socket with SO_REUSEPORT per worker slot, letting
the kernel spread connections across them; it keeps its copy of each, so a
worker that is recycled or dies leaves its socket, and the connections queued
on it, to its replacement (see :mod:`sockserve.runner.master`).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass, replace

from sockserve.core.addresses import BindSpec, Transport
from sockserve.core.unixfiles import SocketFileRecord, bind_socket_file, remove_socket_file

__all__ = [
    "Listener",
    "ListenerError",
    "SocketFileOptions",
    "adopt_fd",
    "close_listeners",
    "open_listeners",
]


class ListenerError(Exception):
    """A listener could not be opened; the message starts with its address."""

    def __init__(self, spec: BindSpec | str, error: OSError | str) -> None:
        super().__init__(f"cannot bind {spec}: {error}")
        self.spec = spec
        self.error = error


@dataclass
class Listener:
    """An open socket and the spec it answers to (with the real port after binding)."""

    spec: BindSpec
    sock: socket.socket
    #: The socket file this process created (``close_listeners`` removes it,
    #: if the path still names that very file, from this very process).
    socket_file: SocketFileRecord | None = None

    @property
    def address(self) -> object:
        """What clients connect to: the socket file's path, else ``getsockname()``.

        A socket file created with a mode or owner was bound under a private
        name and linked into place, so ``getsockname()`` names the former.
        """
        if self.socket_file is not None:
            return self.socket_file.path
        return self.sock.getsockname()

    @property
    def datagram(self) -> bool:
        return self.sock.type == socket.SOCK_DGRAM

    def fresh_reuse_port_socket(self, backlog: int) -> socket.socket:
        """A new socket bound to the same address with SO_REUSEPORT (one per worker)."""
        sock = socket.socket(self.sock.family, self.sock.type)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.spec.dual_stack:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(self.sock.getsockname())
            if sock.type == socket.SOCK_STREAM:
                sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock


@dataclass(frozen=True)
class SocketFileOptions:
    """How the Unix socket files are created: mode (None: the umask's), uid and gid (-1: ours)."""

    mode: int | None = None
    uid: int = -1
    gid: int = -1


def open_listeners(
    specs: list[BindSpec],
    *,
    backlog: int = socket.SOMAXCONN,
    reuse_port: bool = False,
    socket_files: SocketFileOptions = SocketFileOptions(),
    overlap: bool = False,
) -> list[Listener]:
    """Open every spec or none: on the first failure close the others and raise.

    With ``reuse_port``, a port another process already listens on is
    refused unless ``overlap``: SO_REUSEPORT would let both bind and split
    the connections between two unrelated servers without a word.
    """
    opened: list[Listener] = []
    try:
        for spec in specs:
            if reuse_port and not overlap:
                _refuse_a_port_in_use(spec)
            opened.append(_open_one(spec, backlog, reuse_port, socket_files))
    except BaseException:
        close_listeners(opened)
        raise
    return opened


def _open_one(
    spec: BindSpec, backlog: int, reuse_port: bool, socket_files: SocketFileOptions
) -> Listener:
    if spec.transport is Transport.FD:
        assert isinstance(spec.address, int)
        return adopt_fd(spec.address)
    kind = socket.SOCK_DGRAM if spec.transport is Transport.UDP else socket.SOCK_STREAM
    try:
        sock = socket.socket(spec.family, kind)
    except OSError as exc:
        if spec.dual_stack and exc.errno == errno.EAFNOSUPPORT:
            # Python has IPv6 but the kernel has it off: "all addresses" then
            # means all IPv4 addresses.
            port = spec.inet_address[1]
            ipv4 = replace(spec, family=socket.AF_INET, address=("0.0.0.0", port), dual_stack=False)
            return _open_one(ipv4, backlog, reuse_port, socket_files)
        raise ListenerError(spec, exc) from exc
    try:
        socket_file = None
        if spec.transport is Transport.UNIX:
            assert isinstance(spec.address, str)
            _remove_stale_socket_file(spec, spec.address)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if spec.dual_stack:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address = spec.address
        assert not isinstance(address, int)  # only fd:// specs carry a number
        try:
            if spec.transport is Transport.UNIX:
                assert isinstance(address, str)
                files = socket_files
                socket_file = bind_socket_file(
                    sock, address, mode=files.mode, uid=files.uid, gid=files.gid
                )
            else:
                sock.bind(address)
        except OSError as exc:
            raise ListenerError(spec, exc) from exc
        # With reuse_port the workers listen on their own TCP sockets: a listening
        # socket here would get a share of the connections and never accept them.
        # (Unix sockets cannot be spread so: they are shared, and listen here.)
        if kind == socket.SOCK_STREAM and not (reuse_port and spec.transport is Transport.TCP):
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(spec.bound_to(sock.getsockname()), sock, socket_file)


def _refuse_a_port_in_use(spec: BindSpec) -> None:
    """Bind a probe without SO_REUSEPORT: it fails where another process listens (or, for
    UDP, is bound), which our own SO_REUSEPORT socket would silently join."""
    if spec.transport not in (Transport.TCP, Transport.UDP) or spec.inet_address[1] == 0:
        return
    kind = socket.SOCK_DGRAM if spec.transport is Transport.UDP else socket.SOCK_STREAM
    try:
        probe = socket.socket(spec.family, kind)
    except OSError:
        return  # _open_one reports it, or falls back to IPv4
    with probe:
        if kind == socket.SOCK_STREAM:  # TIME_WAIT leftovers are no one's
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if spec.dual_stack:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            probe.bind(spec.inet_address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ListenerError(
                    spec,
                    "another process already listens on this port; --reuse-port would share "
                    "its connections with it (--reuse-port-overlap to do that on purpose)",
                ) from None


def _remove_stale_socket_file(spec: BindSpec, path: str) -> None:
    """Unlink a socket file left by a dead server; refuse to touch a live one or a non-socket."""
    if path.startswith("\0"):
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenerError(spec, exc) from exc
    if not stat.S_ISSOCK(info.st_mode):
        raise ListenerError(spec, "the path exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens: left behind by a server that died
            return
        except OSError as exc:
            if exc.errno == errno.EPROTOTYPE:  # a datagram socket file: probe it as one
                return
            raise ListenerError(spec, exc) from exc
    raise ListenerError(spec, "another process is listening on this socket")


def adopt_fd(fd: int, name: str = "") -> Listener:
    """Wrap an inherited listening socket (``fd://N``, systemd socket activation)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenerError(f"fd://{fd}", exc) from exc
    sock.set_inheritable(False)
    spec = _spec_of(sock, fd)
    return Listener(spec, sock)


def _spec_of(sock: socket.socket, fd: int) -> BindSpec:
    """Describe an adopted socket as the spec that would have opened it."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode() if isinstance(name, bytes) else name
        return BindSpec(Transport.UNIX, socket.AF_UNIX, path or f"<fd {fd}>")
    transport = Transport.UDP if sock.type == socket.SOCK_DGRAM else Transport.TCP
    return BindSpec(transport, socket.AddressFamily(sock.family), (name[0], name[1]))


def close_listeners(listeners: list[Listener]) -> None:
    """Close the sockets; remove the socket files this process created.

    Only the very file each listener bound is removed: if the path was
    removed and bound again by a newer instance (a restart that overlapped
    this one), that instance's file is left alone.
    """
    for listener in listeners:
        listener.sock.close()
        remove_socket_file(listener.socket_file)
        listener.socket_file = None
