"""The one typed source of truth for settings.

Every setting is a field of a frozen dataclass here. The TOML loader
(:mod:`ftp_cluster.shared.config`), the CLI (:mod:`ftp_cluster.supervisor.cli`)
and the library :class:`ftp_cluster.Server` all read these definitions rather
than repeating them: a field's ``metadata["help"]`` is its documentation and
``metadata["cli"]`` marks it as a command-line flag as well.

Speed limits are bytes per second; ``None`` means unlimited (the config file
spells that ``0``). "read" is what the server reads (uploads), "write" what it
writes (downloads), as in aioftp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ftp_cluster.shared.users import User

__all__ = ["ClusterConfig", "RedisSettings", "ServerSettings", "TLSSettings"]


def _setting(default: Any, help: str, *, cli: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass(frozen=True)
class ServerSettings:
    """What one FTP server (a worker, or the library ``Server``) needs to run."""

    host: str = _setting("127.0.0.1", "address to listen on", cli=True)
    port: int = _setting(2121, "TCP port to listen on", cli=True)
    workers: int = _setting(1, "worker processes (one listening socket each)", cli=True)
    root: Path = _setting(Path("."), "real directory behind the virtual '/'", cli=True)  # noqa: RUF009 - Path is immutable
    passive_ports: tuple[int, int] | None = _setting(
        None, "inclusive passive port range; None lets the kernel choose"
    )
    masquerade_address: str | None = _setting(None, "address announced in PASV replies")
    maximum_connections: int | None = _setting(None, "sessions, cluster-wide")
    maximum_connections_per_ip: int | None = _setting(None, "sessions per client IP")
    read_speed_limit: int | None = _setting(None, "uploads, all sessions together")
    write_speed_limit: int | None = _setting(None, "downloads, all sessions together")
    read_speed_limit_per_connection: int | None = _setting(None, "uploads, per session")
    write_speed_limit_per_connection: int | None = _setting(None, "downloads, per session")
    socket_timeout: float | None = _setting(30.0, "seconds for one socket read/write")
    path_timeout: float | None = _setting(10.0, "seconds for one file-system operation")
    idle_timeout: float | None = _setting(300.0, "seconds of silence between commands")
    wait_future_timeout: float | None = _setting(5.0, "seconds to wait for a data connection")
    graceful_timeout: float = _setting(30.0, "seconds running transfers get at stop or reload")
    worker_timeout: float = _setting(30.0, "seconds without heartbeat before a worker is replaced")
    welcome_message: str = _setting("ftp-cluster ready", "text of the 220 greeting")
    system_type: str = _setting("UNIX Type: L8", "text of the 215 SYST reply")
    max_line_length: int = _setting(4096, "longest command line accepted, in bytes")

    @property
    def data_ports(self) -> range | None:
        if self.passive_ports is None:
            return None
        low, high = self.passive_ports
        return range(low, high + 1)


@dataclass(frozen=True)
class RedisSettings:
    """Where the cluster-wide state lives and what limits do without it."""

    url: str | None = _setting(None, "Redis URL; None starts an embedded redis-server", cli=True)
    namespace: str = _setting("ftp-cluster", "key prefix, so several clusters share one Redis")
    on_failure: Literal["closed", "open"] = _setting(
        "closed", "while Redis is unreachable: refuse new sessions, or admit a local share"
    )
    lease_ttl: float = _setting(15.0, "seconds a vanished host's connection leases live")
    spare_slots: int = _setting(
        256, "connection slots a worker may hold ahead of need while far below the caps; 0: none"
    )


@dataclass(frozen=True)
class TLSSettings:
    """FTPS (``[tls]``): off unless a certificate and its key are given."""

    certificate: Path | None = _setting(None, "PEM certificate chain (enables FTPS)", cli=True)  # noqa: RUF009
    private_key: Path | None = _setting(None, "PEM private key of the certificate", cli=True)  # noqa: RUF009
    implicit_port: int | None = _setting(
        None, "also listen for implicit FTPS (TLS from the first byte) on this port"
    )
    required: Literal["none", "control", "all"] = _setting(
        "none", "none: TLS optional; control: before USER/PASS; all: also PROT P for data"
    )
    session_reuse: Literal["required", "optional"] = _setting(
        "required", "a protected data connection must resume its control session's TLS session"
    )
    minimum_version: Literal["TLSv1.2", "TLSv1.3"] = _setting("TLSv1.2", "oldest TLS version")
    client_ca: Path | None = _setting(None, "CA file for client certificates (asks for them)")  # noqa: RUF009

    @property
    def enabled(self) -> bool:
        return self.certificate is not None


@dataclass(frozen=True)
class ClusterConfig:
    """A whole configuration: the ``[server]``, ``[redis]`` and ``[tls]`` tables and the users."""

    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    users: tuple[User, ...] = ()
    source: Path | None = None
