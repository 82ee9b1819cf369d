"""FTPS test helpers: a throwaway CA and certificates, and TLS clients that resume."""

from __future__ import annotations

import ftplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme


@dataclass(frozen=True)
class Certificates:
    """A CA and a server certificate for 127.0.0.1/localhost, as PEM files."""

    ca: trustme.CA
    ca_file: Path
    chain: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca_file, chain, key = directory / "ca.pem", directory / "chain.pem", directory / "key.pem"
        ca.cert_pem.write_to_path(ca_file)
        cert.private_key_and_cert_chain_pem.write_to_path(chain)
        cert.private_key_pem.write_to_path(key)
        return cls(ca, ca_file, chain, key)

    def client_context(self, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if version is not None:
            context.minimum_version = context.maximum_version = version
        return context

    def server_options(self, **extra: Any) -> dict[str, Any]:
        return {"tls_certificate": self.chain, "tls_private_key": self.key, **extra}


class ResumingFTP_TLS(ftplib.FTP_TLS):
    """ftplib's FTPS client, with data connections that resume the control session.

    Stdlib ftplib hands each data socket a fresh TLS session, which a server
    that requires reuse (ours, vsftpd, ProFTPD) refuses. ``session`` overrides
    which session is offered (a test of a stolen one).
    """

    session: ssl.SSLSession | None = None

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            assert isinstance(self.sock, ssl.SSLSocket)
            session = self.session or self.sock.session
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size
