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

import ipaddress
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
    networks,
    port_range,
    setting,
    single_line,
    word,
)
from ftp_cluster.shared.users import User

__all__ = [
    "AccountsSettings",
    "ClusterConfig",
    "DefenderSettings",
    "LoggingSettings",
    "MetricsSettings",
    "RedisSettings",
    "ServerSettings",
    "TLSSettings",
]

_REDIS_SCHEMES = frozenset(
    {
        "redis",
        "rediss",
        "unix",
        "redis+sentinel",
        "rediss+sentinel",
        "redis+cluster",
        "rediss+cluster",
    }
)


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
    default_quota_bytes: int | None = limit("disk quota in bytes of users without their own")
    default_quota_files: int | None = limit("quota of files of users without their own")
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
    proxy_protocol: bool = setting(
        False, "connections from trusted_proxies start with a PROXY v1/v2 header"
    )
    trusted_proxies: tuple[str, ...] = setting(
        (), "networks of the proxies whose PROXY headers are believed", check=networks
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

    from ftp_cluster.shared.limits.redis.cluster import parse_cluster_url  # noqa: PLC0415
    from ftp_cluster.shared.limits.redis.connection import (  # noqa: PLC0415
        parse_sentinel_url,
        redact,
    )

    scheme = value.partition("://")[0] if "://" in value else ""
    if scheme not in _REDIS_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in sorted(_REDIS_SCHEMES))
        raise Invalid(f"must start with one of {allowed}", redact(value))
    try:
        if parse_sentinel_url(value) is None and parse_cluster_url(value) is None:
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
class DefenderSettings:
    """The brute-force defender (``[defender]``): scores failures per IP, bans at a threshold."""

    enabled: bool = setting(False, "score failed logins and ban the IPs that reach the threshold")
    threshold: int = setting(15, "score at which an IP is banned", check=at_least(1))
    score_bad_password: int = setting(1, "score of a wrong password", check=at_least(0))
    score_unknown_user: int = setting(2, "score of a login that does not exist", check=at_least(0))
    score_limit_exceeded: int = setting(
        3,
        "score of a refusal for a connection limit (421 at connect, 530 at login)",
        check=at_least(0),
    )
    observation_time: float = setting(1800.0, "seconds a score counts", check=at_least(1))
    ban_time: float = setting(1800.0, "seconds of an IP's first ban", check=at_least(1))
    ban_time_increment: float = setting(
        0.5, "each further ban of an IP within a day lasts this much longer", check=at_least(0)
    )
    safelist: tuple[str, ...] = setting(
        (), "IP addresses and networks that are never banned", check=networks
    )
    login_delay: float = setting(
        1.0, "seconds before a failed login is answered", check=between(0, 60)
    )
    ipv6_prefix: int = setting(
        64, "IPv6 addresses are scored per network of this prefix", check=between(1, 128)
    )


def _log_file(value: Path) -> None:
    if not value.is_absolute():
        raise Invalid("must be an absolute path", str(value))
    if not value.parent.is_dir():
        raise Invalid(f"directory {str(value.parent)!r} does not exist", str(value))
    if value.is_dir():
        raise Invalid("is a directory", str(value))


@dataclass(frozen=True)
class LoggingSettings:
    """The server log's format and the transfer log (``[logging]``)."""

    format: Literal["text", "json"] = setting(
        "text", "server log lines: text, or one JSON object per line", cli=True
    )
    transfer_log: Path | None = setting(
        None,
        "append an xferlog(5) line per transfer to this file (absolute path)",
        cli=True,
        check=_log_file,
    )


def _listen_address(value: str) -> None:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise Invalid("must be HOST:PORT, e.g. 127.0.0.1:9121", value)
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise Invalid("the host must be an IP address", value) from None


@dataclass(frozen=True)
class MetricsSettings:
    """The supervisor's Prometheus endpoint (``[metrics]``)."""

    listen: str | None = setting(
        None, "serve GET /metrics on HOST:PORT; None: no endpoint", cli=True, check=_listen_address
    )

    @property
    def address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class AccountsSettings:
    """Users in PostgreSQL, and how long what was learnt of an account is reused
    (``[accounts]``). Without ``database``, users come only from ``[[users]]``."""

    database: str | None = setting(
        None,
        "PostgreSQL URL of the ftp_users table; None: users come only from [[users]]",
        check=_postgres_url,
        secret=True,
    )
    cache_seconds: float = setting(
        5.0,
        "seconds a user looked up, and a password verified against its hash, are reused; 0: never",
        check=at_least(0),
    )
    pool_size: int = setting(2, "database connections per worker", check=between(1, 100))
    timeout: float = setting(
        2.0,
        "seconds a lookup (connect and query) may take before the login gets 421",
        check=between(0.1, 60),
    )


@dataclass(frozen=True)
class ClusterConfig:
    """A whole configuration: the ``[server]``, ``[redis]``, ``[tls]``, ``[defender]``,
    ``[accounts]``, ``[logging]`` and ``[metrics]`` tables and the users."""

    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    accounts: AccountsSettings = field(default_factory=AccountsSettings)
    defender: DefenderSettings = field(default_factory=DefenderSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    users: tuple[User, ...] = ()
    source: Path | None = None
