"""Where a login's user comes from: the config file first, then the database.

:meth:`Directory.find` answers a login with a :class:`User` or ``None``
(refused: 530). A login the file defines is the file's, always, with no I/O.
Other logins go to the database through a cache: a row looked up is reused
for ``cache_seconds``, so a change on the database (a new password, a
disabled or deleted row) reaches every worker within that time, and the
database sees about one query per login per ``cache_seconds`` per worker.
Absent rows are cached too (bounded in number), so that probing names does
not become database load; concurrent lookups of one login share one query.

While the database is unreachable, a login whose entry is still held (even
past its time) gets that entry, so users who logged in lately go on logging
in; any other raises :class:`AccountsUnavailable` (421). A row with bad data
refuses that login only, and is logged once per problem.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ftp_cluster.shared.accounts.database import AccountsUnavailable, UserDatabase
from ftp_cluster.shared.accounts.rows import BadRow, user_from_row
from ftp_cluster.shared.settings import AccountsSettings
from ftp_cluster.shared.users import User, UserTable

__all__ = ["AccountsUnavailable", "Directory"]

log = logging.getLogger("ftp_cluster.accounts")

#: Entries the cache holds at most; the oldest go first.
_MAX_ENTRIES = 50_000
#: Longer logins are not looked up.
_MAX_LOGIN = 256
#: Bad rows remembered as already logged.
_MAX_LOGGED = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    user: User | None  # None: refused (disabled or bad row)
    found: bool  # False: no such row (the file's anonymous account may take it)


class Directory:
    """The users of one server: the file's table and, optionally, a database."""

    def __init__(
        self,
        table: UserTable,
        database: UserDatabase | None = None,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.database = database
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Future[_Entry]] = {}
        self._logged: set[tuple[str, str]] = set()

    @classmethod
    def from_settings(cls, table: UserTable, settings: AccountsSettings | None) -> Directory:
        """The file's users, and the database ``[accounts]`` names if it names one."""
        if settings is None or settings.database is None:
            return cls(table)
        database = UserDatabase(
            settings.database, pool_size=settings.pool_size, timeout=settings.timeout
        )
        return cls(table, database, cache_seconds=settings.cache_seconds)

    def session_table(self) -> UserTable:
        """The users a session may consult before PASS (to skip it for password-less ones).

        With a database, the file's anonymous account is left out: a login
        may be a database user with a password, so PASS is always asked for.
        """
        if self.database is None or self.table.anonymous is None:
            return self.table
        return UserTable([user for user in self.table.users if user.login is not None])

    async def find(self, login: str) -> User | None:
        """The user ``login`` logs in as, or ``None`` (no such user, disabled, bad row).

        Raises :class:`AccountsUnavailable` when only the database could
        answer and it cannot.
        """
        user = self.table.named(login)
        if user is not None or self.database is None:
            return user if user is not None else self.table.anonymous
        if not _plausible(login):
            return self.table.anonymous
        entry = self._cache.get(login)
        if entry is None or entry.expires <= self._clock():
            try:
                entry = await self._lookup(login)
            except AccountsUnavailable:
                if entry is None:  # nothing held: only the database knows
                    raise
        if not entry.found:
            return self.table.anonymous
        return entry.user

    async def _lookup(self, login: str) -> _Entry:
        pending = self._pending.get(login)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._pending[login] = future
        try:
            entry = await self._query(login)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._pending[login]
        future.set_result(entry)
        return entry

    async def _query(self, login: str) -> _Entry:
        assert self.database is not None
        row = await self.database.fetch(login)
        expires = self._clock() + self.cache_seconds
        if row is None:
            entry = _Entry(expires, None, found=False)
        elif row["disabled"]:
            entry = _Entry(expires, None, found=True)
        else:
            try:
                entry = _Entry(expires, user_from_row(row), found=True)
            except BadRow as bad:
                self._log_bad_row(login, bad)
                entry = _Entry(expires, None, found=True)
        if self.cache_seconds > 0:
            self._store(login, entry)
        return entry

    def _store(self, login: str, entry: _Entry) -> None:
        self._cache.pop(login, None)
        if len(self._cache) >= _MAX_ENTRIES:
            del self._cache[next(iter(self._cache))]
        self._cache[login] = entry

    def _log_bad_row(self, login: str, bad: BadRow) -> None:
        key = (login, str(bad))
        if key in self._logged:
            return
        if len(self._logged) >= _MAX_LOGGED:
            self._logged.clear()
        self._logged.add(key)
        log.error("user %r refused: bad row in the users database: %s", login, bad)

    async def close(self) -> None:
        if self.database is not None:
            await self.database.close()


def _plausible(login: str) -> bool:
    """Whether ``login`` could be a row's: what the wire may carry and a row may not
    (bytes that are not UTF-8, NUL, white space) is no user, not a database error."""
    if not login or len(login) > _MAX_LOGIN or any(c.isspace() or c == "\x00" for c in login):
        return False
    try:
        login.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
