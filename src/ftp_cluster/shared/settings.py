"""The one typed source of truth for settings.

Every setting is a field of a frozen dataclass here (the limits that users
share with the server are in :class:`~ftp_cluster.shared.fields.LimitSettings`).
The TOML loader (:mod:`ftp_cluster.shared.config`), the CLI
(:mod:`ftp_cluster.supervisor.cli`) and the library :class:`ftp_cluster.Server`
all read these definitions rather than repeating them: each field's
:class:`~ftp_cluster.shared.fields.Spec` (made by
:func:`~ftp_cluster.shared.fields.setting`) gives its help, its check, and
whether it is a flag, a directory, or a number whose ``0`` means ``None``.

Speed limits are bytes per second; ``None`` means unlimited (the config file
spells that ``0``). "read" is what the server reads (uploads), "write" what it
writes (downloads), as in aioftp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ftp_cluster.shared.fields import (
    Invalid,
    LimitSettings,
    at_least,
    between,
    ipv4,
    limit,
    port_range,
    setting,
    single_line,
    word,
)
from ftp_cluster.shared.users import User

__all__ = ["AccountsSettings", "ClusterConfig", "RedisSettings", "ServerSettings", "TLSSettings"]

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"})


def _timeout(default: float, help: str) -> Any:
    """Seconds, or ``None`` (the file's ``0``): no timeout."""
    return setting(default, help, check=at_least(0), zero_is_none=True)


@dataclass(frozen=True)
class ServerSettings(LimitSettings):
    """What one FTP server (a worker, or the library ``Server``) needs to run.

    The limits it shares with users (``maximum_connections`` and the four
    speed limits) come from :class:`~ftp_cluster.shared.fields.LimitSettings`.
    """

    host: str = setting("127.0.0.1", "address to listen on", cli=True, check=word)
    port: int = setting(2121, "TCP port to listen on", cli=True, check=between(0, 65535))
    workers: int = setting(
        1, "worker processes (one listening socket each)", cli=True, check=between(1, 1024)
    )
    root: Path = setting(
        Path("."),
        "real directory behind the virtual '/'",
        cli=True,
        directory=True,
    )
    passive_ports: tuple[int, int] | None = setting(
        None, "inclusive passive port range; None lets the kernel choose", check=port_range
    )
    masquerade_address: str | None = setting(None, "address announced in PASV replies", check=ipv4)
    maximum_connections_per_ip: int | None = limit("sessions per client IP")
    socket_timeout: float | None = _timeout(30.0, "seconds for one socket read/write")
    path_timeout: float | None = _timeout(10.0, "seconds for one file-system operation")
    idle_timeout: float | None = _timeout(300.0, "seconds of silence between commands")
    wait_future_timeout: float | None = _timeout(5.0, "seconds to wait for a data connection")
    graceful_timeout: float = setting(
        30.0, "seconds running transfers get at stop or reload", check=at_least(0)
    )
    worker_timeout: float = setting(
        30.0, "seconds without heartbeat before a worker is replaced", check=at_least(0.5)
    )
    welcome_message: str = setting(
        "ftp-cluster ready", "text of the 220 greeting", check=single_line
    )
    system_type: str = setting("UNIX Type: L8", "text of the 215 SYST reply", check=single_line)
    max_line_length: int = setting(
        4096, "longest command line accepted, in bytes", check=between(64, 1 << 20)
    )

    @property
    def data_ports(self) -> range | None:
        if self.passive_ports is None:
            return None
        low, high = self.passive_ports
        return range(low, high + 1)


def _redis_url(value: str) -> None:
    # Imported here: defining settings (the library does) needs no Redis client.
    from redis.connection import parse_url  # noqa: PLC0415

    from ftp_cluster.shared.limits.redis.connection import (  # noqa: PLC0415
        parse_sentinel_url,
        redact,
    )

    scheme = value.partition("://")[0] if "://" in value else ""
    if scheme not in _REDIS_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in sorted(_REDIS_SCHEMES))
        raise Invalid(f"must start with one of {allowed}", redact(value))
    try:
        if parse_sentinel_url(value) is None:
            parse_url(value)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise Invalid(f"is not a valid Redis URL: {exc}") from None


@dataclass(frozen=True)
class RedisSettings:
    """Where the cluster-wide state lives and what limits do without it."""

    url: str | None = setting(
        None, "Redis URL; None starts an embedded redis-server", cli=True, check=_redis_url
    )
    namespace: str = setting(
        "ftp-cluster", "key prefix, so several clusters share one Redis", check=word
    )
    on_failure: Literal["closed", "open"] = setting(
        "closed", "while Redis is unreachable: refuse new sessions, or admit a local share"
    )
    lease_ttl: float = setting(
        15.0, "seconds a vanished host's connection leases live", check=at_least(1)
    )
    spare_slots: int = setting(
        256,
        "connection slots a worker may hold ahead of need while far below the caps; 0: none",
        check=between(0, 100_000),
    )


@dataclass(frozen=True)
class TLSSettings:
    """FTPS (``[tls]``): off unless a certificate and its key are given."""

    certificate: Path | None = setting(
        None, "PEM certificate chain (enables FTPS)", cli=True, file=True
    )
    private_key: Path | None = setting(
        None, "PEM private key (RSA or EC) of the certificate", cli=True, file=True
    )
    implicit_port: int | None = setting(
        None,
        "also listen for implicit FTPS (TLS from the first byte) on this port",
        cli=True,
        check=between(0, 65535),
    )
    required: Literal["none", "control", "all"] = setting(
        "none", "none: TLS optional; control: AUTH before USER/PASS; all: also PROT P for data"
    )
    session_reuse: Literal["required", "optional"] = setting(
        "required", "a protected data connection must resume its control session's TLS session"
    )
    minimum_version: Literal["TLSv1.2", "TLSv1.3"] = setting("TLSv1.2", "oldest TLS version")
    client_ca: Path | None = setting(
        None, "CA file: ask for client certificates and verify them", file=True
    )

    @property
    def enabled(self) -> bool:
        return self.certificate is not None


def _postgres_url(value: str) -> None:
    if not value.startswith(("postgresql://", "postgres://")):
        raise Invalid(
            "must start with postgresql:// (the value is not shown: it may hold a password)"
        )


@dataclass(frozen=True)
class AccountsSettings:
    """Users in PostgreSQL (``[accounts]``): off unless a database is given."""

    database: str | None = setting(
        None,
        "PostgreSQL URL of the ftp_users table; None: users come only from [[users]]",
        check=_postgres_url,
        secret=True,
    )
    cache_seconds: float = setting(
        5.0,
        "seconds a user looked up is reused before the database is asked again; 0: no cache",
        check=between(0, 86400),
    )
    pool_size: int = setting(2, "database connections per worker", check=between(1, 100))
    timeout: float = setting(
        2.0,
        "seconds a lookup (connect and query) may take before the login gets 421",
        check=between(0.1, 60),
    )


@dataclass(frozen=True)
class ClusterConfig:
    """A whole configuration: the ``[server]``, ``[redis]``, ``[tls]`` and ``[accounts]``
    tables and the users."""

    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    accounts: AccountsSettings = field(default_factory=AccountsSettings)
    users: tuple[User, ...] = ()
    source: Path | None = None
