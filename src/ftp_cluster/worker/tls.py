"""TLS contexts for FTPS: one per control session, so that reuse proves ownership.

A TLS session cache and the keys that seal TLS 1.3 session tickets belong to
an :class:`ssl.SSLContext`. Every control connection gets a context of its
own, and its data connections are handshaken on that same context: a data
connection that resumed its TLS session (``session_reused``) can then only
hold a session or ticket of *this* control connection, not one taken from
another session of the same user or worker. A worker-wide context would only
prove "some session on this worker" (vsftpd's weakness on OpenSSL 3).

Making a context costs about half a millisecond (most of it loading the key
and chain), so contexts are made ahead of need: a small pool, refilled one
at a time after the loop has served the callbacks that took from it. Each
context serves one control connection and is dropped with it.

The certificate and key are read once, when the worker makes its
:class:`TLSContexts`, into memory files of the process (``memfd``) that
every later context loads from: a renewal written to disk meanwhile, half
written or broken, reaches no running worker; ``ftp-cluster reload`` starts
workers that read the new files (after checking them).

Once the control handshake is done, the session's context stops issuing TLS
1.3 tickets: data connections send none, since a client that closes an
upload without reading them makes the kernel reset the connection and lose
the end of the upload.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
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


def make_context(options: TLSOptions) -> ssl.SSLContext:
    """A server context for one control session; raises :class:`CertificateError`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[options.minimum_version]
    context.options |= ssl.OP_NO_COMPRESSION
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
        context.verify_mode = ssl.CERT_REQUIRED
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


def _in_memory(path: Path) -> Path:
    """A copy of ``path`` that only this process holds (a memfd), as a path to load."""
    data = path.read_bytes()
    descriptor = os.memfd_create(f"ftp-cluster-{path.name}", os.MFD_CLOEXEC)
    os.write(descriptor, data)
    return Path(f"/proc/self/fd/{descriptor}")


class TLSContexts:
    """Hands out a fresh context per control session (see the module docstring)."""

    def __init__(self, options: TLSOptions, *, session_reuse: bool = True) -> None:
        make_context(options)  # fail now, with the reason, rather than at the first AUTH
        if hasattr(os, "memfd_create"):
            options = TLSOptions(
                _in_memory(options.certificate),
                _in_memory(options.private_key),
                options.minimum_version,
                _in_memory(options.client_ca) if options.client_ca is not None else None,
            )
        self.options = options
        self.session_reuse = session_reuse
        self._pool: deque[ssl.SSLContext] = deque()
        self._refilling = False

    def for_session(self) -> ssl.SSLContext:
        """A context no other session has used."""
        context = self._pool.popleft() if self._pool else make_context(self.options)
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
            try:
                self._pool.append(make_context(self.options))
            except CertificateError as error:  # the files changed under us
                log.error("cannot make a TLS context: %s", error)
                return
            self._refill_later()


def after_control_handshake(context: ssl.SSLContext) -> None:
    """The session's data connections get no TLS 1.3 tickets (see the module docstring)."""
    context.num_tickets = 0
