"""The runner's TLS: one context built from the settings, and which listeners get it.

The master builds the context once while checking the configuration (so bad
files stop the run with exit status 2), and every worker builds its own after
the fork: a reload (SIGHUP) starts workers that read the certificate files
again, which is how a rotated certificate is picked up with no refused
connection. With ``--workers 0`` the in-process server swaps its context on
SIGHUP instead (``server.ssl_context = new``: new connections use it).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from sockserve.core.addresses import BindSpec, Transport
from sockserve.security.tls import server_context

if TYPE_CHECKING:
    from sockserve.runner.settings import RunConfig

__all__ = ["context_from_config", "serves_tls"]


def _password(config: RunConfig) -> str | None:
    password: str | None = config.value("keyfile_password")
    path: str | None = config.value("keyfile_password_file")
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            password = handle.readline().rstrip("\r\n")
    return password


def context_from_config(config: RunConfig) -> ssl.SSLContext | None:
    """The run's TLS context, or None without ``--certfile``; OSError/ValueError if it cannot be."""
    certfile: str | None = config.value("certfile")
    if certfile is None:
        return None
    try:
        return server_context(
            certfile,
            config.value("keyfile"),
            password=_password(config),
            ca_certs=config.value("ca_certs"),
            cert_reqs=config.value("cert_reqs"),
            ciphers=config.value("ciphers"),
            min_version=config.value("tls_min_version"),
            alpn=config.value("alpn"),
        )
    except ssl.SSLError as exc:
        raise ValueError(exc.reason or str(exc)) from None


def serves_tls(spec: BindSpec, config: RunConfig) -> bool:
    """Whether the listener of ``spec`` serves TLS in this run.

    ``tls://`` listeners do; if the run has none, every stream listener does
    once a certificate is given (datagram listeners never).
    """
    if spec.tls:
        return True
    if config.value("certfile") is None or spec.transport is Transport.UDP:
        return False
    return not any(bind.startswith("tls://") for bind in config.bind)
