"""What every control connection of one server shares."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Protocol

from ftp_cluster.shared.accounts.directory import Directory
from ftp_cluster.shared.limits.base import ConnectionCaps, LimitsBackend
from ftp_cluster.shared.settings import ServerSettings
from ftp_cluster.shared.users import User
from ftp_cluster.worker.eager import start_eagerly
from ftp_cluster.worker.endpoints import PortPool
from ftp_cluster.worker.events import SessionEvents
from ftp_cluster.worker.password_check import PasswordChecks
from ftp_cluster.worker.pathio.base import AbstractPathIO
from ftp_cluster.worker.protocol.session import SessionOptions
from ftp_cluster.worker.proxied import TrustedProxies
from ftp_cluster.worker.quota import QuotaScans
from ftp_cluster.worker.sockio import Pipe
from ftp_cluster.worker.stats import WorkerStats
from ftp_cluster.worker.tls import TLSContexts

__all__ = ["ManagedConnection", "WorkerContext"]

_MAX_OTHER_ROOTS = 10_000


class ManagedConnection(Protocol):
    """What the server does to its open control connections."""

    def shutdown(self) -> None:
        """Graceful stop: 421 now if idle, else once the running request ends."""

    def abort(self) -> None:
        """Fast stop: 421 and drop the connection."""

    def expire_if_idle(self, now: float, timeout: float) -> None:
        """Close the session if it has been idle for ``timeout`` seconds."""

    def close_if_banned(self) -> None:
        """421 and close now if the session's address is banned."""


@dataclass(slots=True, eq=False)
class WorkerContext:
    """Settings, back ends and bookkeeping of one server, shared by its sessions."""

    settings: ServerSettings
    options: SessionOptions
    path_io: AbstractPathIO
    limits: LimitsBackend
    roots: dict[str, PurePosixPath]
    ports: PortPool
    caps: ConnectionCaps
    passwords: PasswordChecks  # hashes checked off the loop, in a bounded pool
    stats: WorkerStats = field(default_factory=WorkerStats)  # what the heartbeat reports
    pipe: Pipe = field(default_factory=Pipe)  # uploads splice through it
    connections: set[ManagedConnection] = field(default_factory=set)
    quota_scans: QuotaScans = field(default_factory=QuotaScans)  # first logins' scans
    background: set[asyncio.Task[None]] = field(default_factory=set)
    tls: TLSContexts | None = None  # FTPS configured
    accounts: Directory | None = None  # None: the session options' users only
    #: Real roots of database users by base_path (resolved once, as the file users' are).
    other_roots: dict[object, PurePosixPath] = field(default_factory=dict)
    proxies: TrustedProxies | None = None  # proxy_protocol on: whose PROXY headers count
    draining: bool = False
    events: SessionEvents = field(init=False)  # lifecycle: log lines, figures, transfer log

    def __post_init__(self) -> None:
        self.events = SessionEvents(self.stats)

    def next_session_id(self) -> str:
        """Connections accepted since start number the sessions."""
        session_id = str(self.stats.accepted)
        self.stats.accepted += 1
        return session_id

    def root_for(self, user: User) -> PurePosixPath:
        root = self.roots.get(user.key)
        if root is None:  # a database user: by its base_path, which its row may change
            root = self.other_roots.get(user.base_path)
            if root is None:
                if len(self.other_roots) >= _MAX_OTHER_ROOTS:
                    self.other_roots.clear()
                root = self.path_io.real_root(user.base_path or self.settings.root)
                self.other_roots[user.base_path] = root
        return root

    def start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coroutine`` now, inline; if it has to wait, the rest becomes a task
        that ``wait_closed`` waits for (requests, and limit releases that must
        finish even when their session is gone). ``None``: it is already done."""
        task = start_eagerly(coroutine)
        if task is not None:
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        return task
