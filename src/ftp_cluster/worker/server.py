"""The FTP server one process runs, with aioftp's API.

>>> server = Server(users, path_io_factory=MemoryPathIO, maximum_connections=10)
>>> await server.start("127.0.0.1", 2121)
>>> server.close(); await server.wait_closed()

A cluster worker instead hands over the supervisor's already-bound listening
socket: ``await server.serve([sock])``; ``stop_accepting`` and ``drain`` give
a graceful stop or reload.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ftp_cluster.shared.accounts.directory import Directory
from ftp_cluster.shared.host_limits import listen_backlog
from ftp_cluster.shared.limits.base import Ban, ConnectionCaps, LimitsBackend
from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.shared.settings import (
    AccountsSettings,
    ClusterConfig,
    ServerSettings,
    TLSSettings,
)
from ftp_cluster.shared.users import User, UserTable
from ftp_cluster.worker.connection import ControlConnection
from ftp_cluster.worker.context import WorkerContext
from ftp_cluster.worker.endpoints import PortPool
from ftp_cluster.worker.idle import IdleSweeper
from ftp_cluster.worker.password_check import PasswordChecks
from ftp_cluster.worker.pathio.base import AbstractPathIO
from ftp_cluster.worker.pathio.local import PathIO
from ftp_cluster.worker.protocol.session import SessionOptions
from ftp_cluster.worker.proxied import trusted_proxies
from ftp_cluster.worker.proxied_tls import ProxiedTLSListener
from ftp_cluster.worker.stats import WorkerStats
from ftp_cluster.worker.tls import TLSContexts, TLSOptions
from ftp_cluster.worker.xferlog import TransferLog

__all__ = ["Server", "ServerStats"]

PathIOFactory = Callable[..., AbstractPathIO]
_SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(ServerSettings))
_TLS_NAMES = frozenset(field.name for field in dataclasses.fields(TLSSettings))


#: What :meth:`Server.stats` reports: live sessions and totals since start.
ServerStats = WorkerStats


def _tls_settings(base: TLSSettings | None, options: dict[str, Any]) -> TLSSettings:
    """The ``tls_*`` keywords (``tls_certificate=...``) as :class:`TLSSettings` fields."""
    given = {name: options.pop(name) for name in list(options) if name.startswith("tls_")}
    fields = {name.removeprefix("tls_"): value for name, value in given.items()}
    unknown = set(fields) - _TLS_NAMES
    if unknown:
        raise TypeError(
            f"unknown Server option(s): {', '.join(f'tls_{n}' for n in sorted(unknown))}"
        )
    for name in ("certificate", "private_key", "client_ca"):
        if fields.get(name) is not None:
            fields[name] = Path(fields[name])
    tls = dataclasses.replace(base or TLSSettings(), **fields)
    if tls.enabled and tls.private_key is None:
        raise TypeError("tls_certificate needs tls_private_key")
    return tls


def _settings(base: ServerSettings | None, options: dict[str, Any]) -> ServerSettings:
    """aioftp-style keyword arguments, checked against :class:`ServerSettings`."""
    if "data_ports" in options:
        ports = options.pop("data_ports")
        options["passive_ports"] = (ports[0], ports[-1]) if ports else None
    unknown = set(options) - _SETTING_NAMES
    if unknown:
        raise TypeError(f"unknown Server option(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(base or ServerSettings(), **options)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(listen_backlog())
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _contexts(tls: TLSSettings) -> TLSContexts | None:
    if tls.certificate is None or tls.private_key is None:
        return None
    options = TLSOptions(tls.certificate, tls.private_key, tls.minimum_version, tls.client_ca)
    return TLSContexts(options, session_reuse=tls.session_reuse == "required")


def _sockets(server: asyncio.AbstractServer) -> Sequence[socket.socket]:
    # Both asyncio's and uvloop's servers have ``sockets``; the ABC does not say so.
    sockets: Sequence[socket.socket] = getattr(server, "sockets", ())
    return sockets


class Server:
    """An FTP server running in the caller's event loop.

    ``users``: the accounts (default: one anonymous user with read and write
    access to ``/``, which is the current directory). ``path_io_factory`` is
    called once, with ``timeout=path_timeout``. ``limits`` is the limits
    back end (default: in-process). ``accounts``: the ``[accounts]`` settings
    (``cache_seconds`` of verified passwords). Every other keyword is a
    :class:`~ftp_cluster.shared.settings.ServerSettings` field (aioftp's
    ``maximum_connections``, ``read_speed_limit``, ``socket_timeout``,
    ``idle_timeout``, ``wait_future_timeout``, ``path_timeout``, ...) or
    ``data_ports`` (a range of passive ports). ``transfer_log``: a file that
    gets an xferlog(5) line per transfer (:mod:`~ftp_cluster.worker.xferlog`).
    """

    def __init__(
        self,
        users: Sequence[User] | None = None,
        path_io_factory: PathIOFactory = PathIO,
        *,
        limits: LimitsBackend | None = None,
        settings: ServerSettings | None = None,
        tls: TLSSettings | None = None,
        accounts: AccountsSettings | None = None,
        transfer_log: Path | None = None,
        **options: Any,
    ) -> None:
        self.tls = _tls_settings(tls, options)
        self.settings = _settings(settings, options)
        self.users = UserTable(users if users is not None else (User(),))
        self.path_io = path_io_factory(timeout=self.settings.path_timeout)
        self.limits = limits if limits is not None else LocalLimits()
        self.accounts = accounts if accounts is not None else AccountsSettings()
        self.directory = Directory.from_settings(self.users, self.accounts)
        stats = WorkerStats()
        self._ctx = WorkerContext(
            settings=self.settings,
            stats=stats,
            options=SessionOptions(
                users=self.directory.session_table(),
                welcome_message=self.settings.welcome_message,
                system_type=self.settings.system_type,
                max_line_length=self.settings.max_line_length,
                masquerade_address=self.settings.masquerade_address,
                tls=self.tls.enabled,
                tls_required=self.tls.required,
                default_quota_bytes=self.settings.default_quota_bytes,
                default_quota_files=self.settings.default_quota_files,
                on_login_refused=stats.login,
            ),
            path_io=self.path_io,
            limits=self.limits,
            roots=self._roots(),
            ports=PortPool(self.settings.data_ports),
            caps=ConnectionCaps(
                server=self.settings.maximum_connections,
                per_ip=self.settings.maximum_connections_per_ip,
            ),
            tls=_contexts(self.tls),
            accounts=self.directory,
            passwords=PasswordChecks(cache_seconds=self.accounts.cache_seconds),
            proxies=trusted_proxies(self.settings),
        )
        if transfer_log is not None:
            self._ctx.events.transfer_log = TransferLog(transfer_log)
        self.limits.bans.on_ban = self._close_banned
        self._servers: list[asyncio.AbstractServer] = []
        self._proxied_tls: list[ProxiedTLSListener] = []  # implicit FTPS behind a proxy
        timeout = self.settings.idle_timeout
        self._idle: IdleSweeper | None = None
        if timeout is not None:
            self._idle = IdleSweeper(lambda: self._ctx.connections, timeout)
        self._started = time.time()
        self._closed = asyncio.Event()

    @classmethod
    def from_config(
        cls,
        config: ClusterConfig,
        *,
        limits: LimitsBackend,
        path_io_factory: PathIOFactory = PathIO,
    ) -> Server:
        """A server for a cluster worker, from a loaded configuration."""
        # With a database, no [[users]] means "only the database's", not "anonymous".
        users = config.users or (() if config.accounts.database else (User(),))
        return cls(
            users,
            path_io_factory,
            limits=limits,
            settings=config.server,
            tls=config.tls,
            accounts=config.accounts,
            transfer_log=config.logging.transfer_log,
        )

    def _roots(self) -> dict[str, PurePosixPath]:
        default = Path(self.settings.root)
        return {
            user.key: self.path_io.real_root(user.base_path or default) for user in self.users.users
        }

    def _close_banned(self, ban: Ban) -> None:
        # Any worker's ban, heard of here: its offender's sessions end now.
        for connection in list(self._ctx.connections):
            connection.close_if_banned()

    # -- running ------------------------------------------------------------

    async def start(
        self, host: str | None = None, port: int = 0, *, implicit_port: int | None = None
    ) -> None:
        """Bind ``host:port`` (default: the settings') and start accepting.

        ``implicit_port`` (default: ``[tls] implicit_port``; 0 picks a free
        one) also listens for implicit FTPS.
        """
        host = host if host is not None else self.settings.host
        implicit = implicit_port if implicit_port is not None else self.tls.implicit_port
        sockets = [_listen(host, port)]
        try:
            if implicit is not None:
                sockets.append(_listen(host, implicit))
        except BaseException:
            sockets[0].close()
            raise
        await self.serve(sockets[:1], sockets[1:])

    async def serve(
        self, sockets: Sequence[socket.socket], implicit_tls: Sequence[socket.socket] = ()
    ) -> None:
        """Accept on already-bound, listening sockets (the supervisor's slots).

        Sessions on ``implicit_tls`` sockets start with the TLS handshake.
        """
        if implicit_tls and self._ctx.tls is None:
            raise ValueError("implicit FTPS sockets without a TLS certificate")
        await self.limits.start()
        loop = asyncio.get_running_loop()
        ctx = self._ctx
        for sock, implicit in [*((s, False) for s in sockets), *((s, True) for s in implicit_tls)]:
            # Urgent data stays in the stream: an ABOR sent with MSG_OOB
            # (stdlib ftplib.abort) arrives whole. Accepted sockets inherit it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            factory = functools.partial(ControlConnection, ctx, implicit_tls=implicit)
            if implicit and ctx.proxies is not None:
                # The header must be read off the raw socket, before the TLS handshake.
                listener = ProxiedTLSListener(sock, ctx, ctx.proxies, factory)
                listener.start()
                self._proxied_tls.append(listener)
                continue
            server = await loop.create_server(
                factory,
                sock=sock,
                backlog=listen_backlog(),
            )
            self._servers.append(server)
        if self._idle is not None:
            self._idle.start()

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (to learn the bound port)."""
        served = [sock for server in self._servers for sock in _sockets(server)]
        return served + [lst.sock for lst in self._proxied_tls if lst.accepting]

    def stop_accepting(self) -> None:
        """Close this process's listening sockets; sessions go on."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        for listener in self._proxied_tls:
            listener.close()

    async def drain(self, timeout: float) -> None:
        """Graceful stop: 421 to idle sessions now, to busy ones when done or at ``timeout``."""
        self.stop_accepting()
        self._ctx.draining = True
        self._drop_pending_headers()
        for connection in list(self._ctx.connections):
            connection.shutdown()
        deadline = time.monotonic() + timeout
        while self._ctx.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self._ctx.connections):
            connection.abort()

    def close(self) -> None:
        """Stop accepting and drop every session now (``wait_closed`` to finish)."""
        self.stop_accepting()
        self._ctx.draining = True
        self._drop_pending_headers()
        for connection in list(self._ctx.connections):
            connection.abort()
        if self._idle is not None:
            self._idle.stop()
        self._closed.set()

    def _drop_pending_headers(self) -> None:
        # As the plain port drops its connections still waiting for a header.
        for listener in self._proxied_tls:
            listener.drop_pending()
        self._proxied_tls.clear()

    async def wait_closed(self) -> None:
        """Wait for sessions, limit releases and the limits back end to finish."""
        await self._closed.wait()
        while self._ctx.connections or self._ctx.background:
            if self._ctx.background:
                await asyncio.wait(list(self._ctx.background), timeout=1.0)
            else:
                await asyncio.sleep(0.01)
        await self._ctx.quota_scans.close()
        await self.limits.close()
        await self.directory.close()
        self._ctx.pipe.close()
        self._ctx.passwords.close()
        self._ctx.events.close()

    def reopen_logs(self) -> None:
        """Open the transfer log anew (after logrotate renamed it)."""
        self._ctx.events.reopen()

    @property
    def started(self) -> float:
        """When the server was made (``time.time()``)."""
        return self._started

    def stats(self) -> WorkerStats:
        """A copy of the figures, live ones (sessions, Redis commands) filled in."""
        stats = self._ctx.stats
        stats.sessions = len(self._ctx.connections)
        stats.redis_commands = self.limits.stats().commands_sent
        return copy.deepcopy(stats)
