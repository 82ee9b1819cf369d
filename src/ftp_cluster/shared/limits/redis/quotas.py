"""Users' disk tallies in Redis, shared by every worker of every host.

Each user's tally is one hash (bytes, files) that the ``lua/quota_*``
scripts change; every script touches that one key only. A reservation is
granted up to the quota's edge atomically, so uploads of one user through
any number of workers never together pass the quota.

While Redis is down (:mod:`.health`) the quota is enforced from the last
tally this worker saw, conservatively: the worker may add at most its share
(``1/workers``) of the room that tally left, plus what it freed itself, and
a user whose tally it never saw gets
:attr:`~ftp_cluster.shared.limits.base.QuotaRefusal.UNAVAILABLE`
(452). Every change made meanwhile is kept and applied to Redis by the
resync once it is back, so nothing is lost; a scan done meanwhile is
applied only where Redis has no tally.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from ftp_cluster.shared.limits.base import QuotaLimits, QuotaRefusal, Quotas, Usage
from ftp_cluster.shared.limits.local import grant
from ftp_cluster.shared.limits.redis.health import Health
from ftp_cluster.shared.limits.redis.schema import QUOTA_ADJUST, QUOTA_RESERVE, QUOTA_SET, Keys
from ftp_cluster.shared.limits.redis.store import RedisStore

__all__ = ["RedisQuotas"]

#: Bytes one reservation of a running upload asks for: one round trip per 2 MiB.
#: Each running upload may hold this much reserved and not yet written, which
#: others of the same user cannot have meanwhile.
_CHUNK = 2 * 1024 * 1024
_FILES_REFUSED = -1
_NO_TALLY = -2


@dataclass(slots=True)
class _Offline:
    """What one user's tally went through while Redis was down."""

    bytes: int = 0  # change to apply to Redis
    files: int = 0
    scanned: Usage | None = None  # a scan's result, for Redis if it has no tally


class RedisQuotas(Quotas):
    """Tallies under ``keys``' namespace; ``workers`` share the room while Redis is down."""

    def __init__(self, store: RedisStore, health: Health, keys: Keys, *, workers: int) -> None:
        self._store = store
        self._health = health
        self._guard = health.guard
        self._keys = keys
        self._workers = workers
        #: The last tally Redis gave for each user (what an outage is judged by).
        self._known: dict[str, Usage] = {}
        self._offline: dict[str, _Offline] = {}

    # -- the part ----------------------------------------------------------

    async def usage(self, user: str) -> Usage | None:
        if self._health.healthy:
            await _in_a_task()
            with self._guard:
                reply = await self._store.command("HMGET", self._keys.quota(user), "bytes", "files")
                if reply[0] is None or reply[1] is None:
                    self._known.pop(user, None)
                    return None
                return self._learn(user, int(reply[0]), int(reply[1]))
        return self._offline_usage(user)

    async def reserve(
        self, user: str, limits: QuotaLimits, nbytes: int, files: int = 0
    ) -> int | QuotaRefusal:
        if self._health.healthy:
            args = [nbytes, files, _arg(limits.bytes), _arg(limits.files)]
            await _in_a_task()
            with self._guard:
                reply = await self._store.eval(QUOTA_RESERVE, [self._keys.quota(user)], args)
                granted = int(reply[0])
                if granted == _NO_TALLY:
                    self._known.pop(user, None)
                    return QuotaRefusal.UNKNOWN
                self._learn(user, int(reply[1]), int(reply[2]))
                return QuotaRefusal.FILES if granted == _FILES_REFUSED else granted
        return self._offline_reserve(user, limits, nbytes, files)

    async def adjust(self, user: str, nbytes: int, files: int = 0) -> None:
        if not nbytes and not files:
            return
        if self._health.healthy:
            await _in_a_task()
            with self._guard:
                reply = await self._store.eval(
                    QUOTA_ADJUST, [self._keys.quota(user)], [nbytes, files]
                )
                if reply:
                    self._learn(user, int(reply[0]), int(reply[1]))
                return
        offline = self._offline.setdefault(user, _Offline())
        offline.bytes += nbytes
        offline.files += files

    async def set_usage(self, user: str, usage: Usage, *, only_if_unknown: bool = False) -> bool:
        if self._health.healthy:
            args = [usage.bytes, usage.files, int(only_if_unknown)]
            await _in_a_task()
            with self._guard:
                reply = await self._store.eval(QUOTA_SET, [self._keys.quota(user)], args)
                return self._learn(user, int(reply[0]), int(reply[1])) == usage
        if only_if_unknown and self._offline_usage(user) is not None:
            return self._offline_usage(user) == usage
        # Counted from the disk, so it already holds what happened meanwhile.
        self._known[user] = usage
        self._offline[user] = _Offline(scanned=usage)
        return True

    def chunk_size(self) -> int:
        return _CHUNK

    # -- outage --------------------------------------------------------------

    def _learn(self, user: str, nbytes: int, files: int) -> Usage:
        usage = self._known.get(user)
        if usage is None or usage.bytes != nbytes or usage.files != files:
            usage = self._known[user] = Usage(nbytes, files)
        return usage

    def _offline_usage(self, user: str) -> Usage | None:
        known = self._known.get(user)
        if known is None:
            return None
        offline = self._offline.get(user)
        if offline is None:
            return known
        return Usage(max(0, known.bytes + offline.bytes), max(0, known.files + offline.files))

    def _offline_reserve(
        self, user: str, limits: QuotaLimits, nbytes: int, files: int
    ) -> int | QuotaRefusal:
        known = self._known.get(user)
        current = self._offline_usage(user)
        if known is None or current is None:
            return QuotaRefusal.UNAVAILABLE
        offline = self._offline.setdefault(user, _Offline())
        headroom = None
        if limits.bytes is not None:
            # Every worker may be doing the same: each takes its share of the
            # room the last known tally left (plus what it freed itself).
            room = math.ceil(max(0, limits.bytes - known.bytes) / self._workers)
            headroom = max(0, room - offline.bytes)
        granted = grant(current, limits, nbytes, files, headroom)
        if isinstance(granted, int):
            offline.bytes += granted
            offline.files += files
        return granted

    # -- health hooks (RedisPart) --------------------------------------------------

    def lost(self) -> None:
        """Nothing to do: the tallies already seen are what the outage goes by."""

    def resync(self) -> AbstractAsyncContextManager[str]:
        return self._resync()

    @contextlib.asynccontextmanager
    async def _resync(self) -> AsyncIterator[str]:
        applied = 0
        # One user at a time, each forgotten only once Redis has it: a failure
        # half-way keeps the rest for the next attempt. Changes made while
        # this runs (still offline) wait for the next resync.
        for user in list(self._offline):
            offline = self._offline.pop(user)
            key = [self._keys.quota(user)]
            try:
                if offline.scanned is not None:
                    scanned = offline.scanned
                    await self._store.eval(QUOTA_SET, key, [scanned.bytes, scanned.files, 1])
                    offline.scanned = None
                if offline.bytes or offline.files:
                    await self._store.eval(QUOTA_ADJUST, key, [offline.bytes, offline.files])
            except BaseException:
                # Kept for the next attempt, with what came in meanwhile.
                later = self._offline.get(user)
                if later is not None:
                    offline.bytes += later.bytes
                    offline.files += later.files
                self._offline[user] = offline
                raise
            applied += 1
        yield f"{applied} quota tallies updated" if applied else "quota tallies in line"

    async def check(self) -> bool:
        return False


async def _in_a_task() -> None:
    """Go on inside a task: the pooled client's timeouts need one.

    Requests start eagerly (:mod:`ftp_cluster.worker.eager`), outside any
    task until they first wait; one loop turn makes the rest a task.
    """
    if asyncio.current_task() is None:
        await asyncio.sleep(0)


def _arg(limit: int | None) -> int:
    return -1 if limit is None else limit
