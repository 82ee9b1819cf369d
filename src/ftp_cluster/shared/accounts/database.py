"""The workers' side of the users database: one small asyncpg pool per process.

The pool is made on first use, in the running event loop, so a worker builds
its own after the fork and never shares the supervisor's sockets. Every
lookup is one prepared ``SELECT`` (asyncpg prepares and caches statements
per connection) under a short deadline, so a login never waits long on the
database and never blocks the event loop. A lookup that fails for the
database's sake raises :class:`AccountsUnavailable`; the first such failure
of an outage is logged (once), and so is the first success after it.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import asyncpg

from ftp_cluster.shared.accounts.rows import COLUMNS, Row
from ftp_cluster.shared.accounts.schema import TABLE

__all__ = ["AccountsUnavailable", "UserDatabase", "describe_url"]

log = logging.getLogger("ftp_cluster.accounts")

_QUERY = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE login = $1"
#: What a lookup may meet when the database is down, restarting or too slow.
_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class AccountsUnavailable(Exception):
    """The users database cannot answer now (the login gets 421: try again later)."""


def describe_url(url: str) -> str:
    """``host:port/database`` of a URL: what logs say, never the password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or '/'}"


class UserDatabase:
    """Row lookups by login against ``ftp_users``."""

    def __init__(self, url: str, *, pool_size: int = 2, timeout: float = 2.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self.down = False  # in an outage: logged once, until a lookup succeeds
        self.lookups = 0
        self.failures = 0

    async def fetch(self, login: str) -> Row | None:
        """The row of ``login`` (``None``: no such row); raises :class:`AccountsUnavailable`."""
        self.lookups += 1
        try:
            # wait_for, not asyncio.timeout: a login may run inline, outside a task.
            row = await asyncio.wait_for(self._fetch(login), self.timeout)
        except _OUTAGE_ERRORS as exc:
            self.failures += 1
            if not self.down:
                self.down = True
                log.error(
                    "users database %s unreachable (%s): logins of users not cached get 421 "
                    "until it answers again",
                    describe_url(self.url),
                    type(exc).__name__,
                )
            raise AccountsUnavailable(str(type(exc).__name__)) from None
        if self.down:
            self.down = False
            log.warning("users database %s reachable again", describe_url(self.url))
        return row

    async def _fetch(self, login: str) -> Row | None:
        pool = await self._get_pool()
        try:
            return await self._query(pool, login)
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
            # A connection the server closed (a restart) fails once; the pool
            # replaces it, so one retry tells "was down" from "is down".
            return await self._query(pool, login)

    async def _query(self, pool: asyncpg.Pool, login: str) -> Row | None:
        async with pool.acquire() as connection:
            try:
                row: Row | None = await connection.fetchrow(_QUERY, login)
            except BaseException:
                # Cut short (an error, the deadline), the connection may be
                # mid-exchange: never hand it to the next lookup.
                connection.terminate()
                raise
            return row

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                # min_size=0: making the pool connects nothing, so a database
                # that is down at start-up is just an outage like any other.
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=0,
                    max_size=self.pool_size,
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                    max_inactive_connection_lifetime=60.0,
                )
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except _OUTAGE_ERRORS:
                pool.terminate()
