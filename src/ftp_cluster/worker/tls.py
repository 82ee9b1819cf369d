"""TLS contexts for FTPS: one per control session, so that reuse proves ownership.

A TLS session cache and the keys that seal TLS 1.3 session tickets belong to
an :class:`ssl.SSLContext`. Every control connection gets a context of its
own, and its data connections are handshaken on that same context: a data
connection that resumed its TLS session (``session_reused``) can then only
hold a session or ticket of *this* control connection, not one taken from
another session of the same user or worker. A worker-wide context would only
prove "some session on this worker" (vsftpd's weakness on OpenSSL 3).

Loading the key and chain into a context costs about 0.6 ms of CPU on
OpenSSL 3.0 (its key decoders), more than the handshake itself: per session
that made TLS churn half as fast as pyftpdlib's one shared context (bench
scenario 14). So a session's context holds no certificate: the worker loads
the chain and key once, into one *certified* context, and each session's
context lends it to its handshakes from the server-name callback (which
OpenSSL runs on every ClientHello, with or without SNI). OpenSSL then takes
the certificate, key and client-CA store from the certified context but
keeps the session cache and ticket keys of the context the connection was
made on (``SSL_set_SSL_CTX`` leaves ``session_ctx`` alone): reuse still
proves "this control session". A bare context costs about 0.15 ms, and
contexts are made ahead of need: a small pool, refilled one at a time after
the loop has served the callbacks that took from it. Each context serves
one control connection and is dropped with it.

The certificate and key are read once, when the worker makes its
:class:`TLSContexts`, into its certified context, which every session's
context lends: a renewal written to disk meanwhile, half written or broken,
reaches no running worker; ``ftp-cluster reload`` starts workers that read
the new files (after checking them).

Once the control handshake is done, the session's context stops issuing TLS
1.3 tickets: data connections send none, since a client that closes an
upload without reading them makes the kernel reset the connection and lose
the end of the upload.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["CertificateError", "TLSContexts", "TLSOptions"]

log = logging.getLogger("ftp_cluster.worker")

#: Contexts kept ready; a burst of logins beyond it makes the rest on demand.
POOL_SIZE = 8

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class CertificateError(ValueError):
    """The certificate, key or CA file cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """What the worker needs to make its contexts (from the ``[tls]`` settings)."""

    certificate: Path
    private_key: Path
    minimum_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    client_ca: Path | None = None


def _bare_context(options: TLSOptions) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[options.minimum_version]
    context.options |= ssl.OP_NO_COMPRESSION
    if options.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED  # the CA store comes with the certificate
    return context


def session_context(certified: ssl.SSLContext, options: TLSOptions) -> ssl.SSLContext:
    """A context for one control session that lends ``certified``'s certificate.

    Its own are the session cache and ticket keys (see the module docstring).
    """
    context = _bare_context(options)

    def lend_certificate(
        connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, own: ssl.SSLContext
    ) -> None:
        connection.context = certified

    context.sni_callback = lend_certificate
    return context


def make_context(options: TLSOptions) -> ssl.SSLContext:
    """A server context with the certificate and key; raises :class:`CertificateError`."""
    context = _bare_context(options)
    try:
        context.load_cert_chain(options.certificate, options.private_key)
    except FileNotFoundError as error:
        raise CertificateError(f"{error.filename}: no such file") from None
    except PermissionError as error:
        raise CertificateError(f"{error.filename}: not readable") from None
    except ssl.SSLError as error:
        raise CertificateError(
            f"{options.certificate} and {options.private_key}: {error.reason or error}"
            " (not PEM, or the key does not match the certificate)"
        ) from None
    if options.client_ca is not None:
        try:
            context.load_verify_locations(cafile=options.client_ca)
        except (OSError, ssl.SSLError) as error:
            raise CertificateError(f"{options.client_ca}: {error}") from None
    return context


def expiry_warning(certificate: Path, now: datetime.datetime | None = None) -> str | None:
    """A warning if ``certificate`` (the first of the chain) has expired or is not valid yet."""
    from cryptography import x509  # noqa: PLC0415 - only at start-up and reload

    try:
        cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    except (OSError, ValueError):
        return None  # make_context says what is wrong with the file
    now = now or datetime.datetime.now(datetime.UTC)
    if now > cert.not_valid_after_utc:
        expired = cert.not_valid_after_utc
        return f"the certificate {certificate} EXPIRED on {expired:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        start = cert.not_valid_before_utc
        return f"the certificate {certificate} is not valid before {start:%Y-%m-%d} UTC"
    return None


class TLSContexts:
    """Hands out a fresh context per control session (see the module docstring)."""

    def __init__(self, options: TLSOptions, *, session_reuse: bool = True) -> None:
        self._certified = make_context(options)  # fails now, with the reason, not at AUTH
        self.options = options
        self.session_reuse = session_reuse
        self._pool: deque[ssl.SSLContext] = deque()
        self._refilling = False

    def for_session(self) -> ssl.SSLContext:
        """A context no other session has used."""
        context = self._pool.popleft() if self._pool else self._make()
        self._refill_later()
        return context

    def _refill_later(self) -> None:
        if self._refilling:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._refilling = True
        loop.call_soon(self._refill_one)

    def _refill_one(self) -> None:
        self._refilling = False
        if len(self._pool) < POOL_SIZE:
            self._pool.append(self._make())
            self._refill_later()

    def _make(self) -> ssl.SSLContext:
        return session_context(self._certified, self.options)


def after_control_handshake(context: ssl.SSLContext) -> None:
    """The session's data connections get no TLS 1.3 tickets (see the module docstring)."""
    context.num_tickets = 0
