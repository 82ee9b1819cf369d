"""The brute-force defender in Redis, shared by every worker of every host.

Scores, bans and each offender's escalation live under the namespace and
change only through ``lua/bans.lua``, which also publishes every new ban and
unban on one channel. Each worker listens there (a connection of its own)
and keeps the bans in force in a local table with their expiry, loaded in
full whenever it (re)subscribes: the check at connect
(:meth:`RedisBans.banned`) costs no round trip, and a ban made anywhere
reaches every worker, and closes its offender's sessions, within a
round trip.

While Redis is down (:mod:`.health`), a :class:`~ftp_cluster.shared.limits.local.LocalBans`
scores this worker's failures and its bans hold on this worker only; the
bans heard of before the outage still hold until they end. Once Redis is
back the listener loads the cluster's bans again and scoring is
cluster-wide once more (local scores are dropped, local bans run out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ftp_cluster.shared.limits.base import Ban, Bans, Offence
from ftp_cluster.shared.limits.local import LocalBans
from ftp_cluster.shared.limits.redis.health import FAILURES, PROBE_INTERVAL, Health
from ftp_cluster.shared.limits.redis.schema import BANS, Keys
from ftp_cluster.shared.limits.redis.store import RedisStore
from ftp_cluster.shared.settings import DefenderSettings

__all__ = ["RedisBans", "ban_arguments"]

logger = logging.getLogger("ftp_cluster.limits")

#: Seconds the listener waits for a message before it checks its connection.
_LISTEN_TIMEOUT = 1.0
#: Listener waits between PINGs on a quiet channel (a dead peer shows up).
_PING_EVERY = 5


def ban_arguments(
    settings: DefenderSettings, action: str, offender: str, channel: str, first: int = 0
) -> list[Any]:
    """ARGV of ``lua/bans.lua``: ``first`` is the points of a failure or a ban's milliseconds."""
    return [
        action,
        offender,
        channel,
        first,
        settings.threshold,
        int(settings.observation_time * 1000),
        int(settings.ban_time * 1000),
        repr(settings.ban_time_increment),
    ]


class RedisBans(Bans):
    """Bans under ``keys``' namespace; ``local`` scores and bans while Redis is down."""

    def __init__(self, store: RedisStore, health: Health, keys: Keys, local: LocalBans) -> None:
        super().__init__()
        self.settings = local.settings
        self._store = store
        self._health = health
        self._guard = health.guard
        self._keys = keys
        self._local = local
        local.on_ban = self._heard
        # offender -> monotonic time its ban ends, as the cluster told us
        self._until: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        #: Set once the listener has subscribed and loaded the bans (tests wait for it).
        self.listening = asyncio.Event()

    # -- the connect check ---------------------------------------------------

    def banned(self, ip: str) -> bool:
        if not self._until:
            return self._local.banned(ip)
        offender = self._local.policy.offender(ip)
        if offender is None:
            return False
        until = self._until.get(offender)
        if until is not None:
            if until > time.monotonic():
                return True
            del self._until[offender]
        return self._local.banned(ip)

    # -- changes ----------------------------------------------------------------

    async def offended(self, ip: str, offence: Offence) -> Ban | None:
        offender = self._local.policy.offender(ip)
        points = self._local.policy.score(offence)
        if not self.settings.enabled or offender is None or points <= 0:
            return None
        if self._health.healthy:
            await _in_a_task()
            channel = self._keys.ban_channel
            args = ban_arguments(self.settings, "score", offender, channel, points)
            with self._guard:
                reply = await self._store.eval(BANS, self._keys.ban_keys(offender), args)
                if int(reply[0]) != 1:
                    return None
                return self._record(offender, int(reply[1]), int(reply[2]))
        return await self._local.offended(ip, offence)

    async def ban(self, ip: str, seconds: float | None = None) -> Ban:
        offender = self._local.policy.offender(ip)
        if offender is None:
            raise ValueError(f"{ip!r} is safelisted or no IP address: it cannot be banned")
        if self._health.healthy:
            await _in_a_task()
            ms = 0 if seconds is None else max(1, int(seconds * 1000))
            args = ban_arguments(self.settings, "ban", offender, self._keys.ban_channel, ms)
            with self._guard:
                reply = await self._store.eval(BANS, self._keys.ban_keys(offender), args)
                return self._record(offender, int(reply[1]), int(reply[2]))
        return await self._local.ban(ip, seconds)

    async def unban(self, ip: str) -> bool:
        offender = self._local.policy.offender(ip)
        if offender is None:
            return False
        was = await self._local.unban(ip)
        was = self._until.pop(offender, None) is not None or was
        if self._health.healthy:
            await _in_a_task()
            args = ban_arguments(self.settings, "unban", offender, self._keys.ban_channel)
            with self._guard:
                return bool(await self._store.eval(BANS, self._keys.ban_keys(offender), args))
        return was

    async def bans(self) -> list[Ban]:
        found = {ban.offender: ban for ban in await self._local.bans()}
        now = time.monotonic()
        for offender, until in list(self._until.items()):
            if until > now:
                found[offender] = Ban(offender, until - now, 0)
        if self._health.healthy:
            await _in_a_task()
            with self._guard:
                for ban in await _scan_bans(self._store, self._keys):
                    found[ban.offender] = ban
        return sorted(found.values(), key=lambda ban: ban.offender)

    def _record(self, offender: str, ms: int, number: int) -> Ban:
        """A ban the cluster made, known here before its message arrives."""
        ban = Ban(offender, ms / 1000, number)
        self._heard(ban)
        return ban

    def _heard(self, ban: Ban) -> None:
        now = time.monotonic()
        known = self._until.get(ban.offender, 0.0) > now
        self._until[ban.offender] = now + ban.seconds
        if not known:  # not our own ban's message coming back
            self.on_ban(ban)

    # -- the listener -------------------------------------------------------------

    def start(self) -> None:
        """Start listening for bans (from inside the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name="redis-bans-listener"
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():  # see Health.stop: 3.11 may swallow a cancel
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _listen(self) -> None:
        while True:
            try:
                async with self._subscribed() as pubsub:
                    await self._load()
                    self._local.forget_scores()
                    self.listening.set()
                    quiet = 0
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=_LISTEN_TIMEOUT
                        )
                        if message is None:
                            quiet += 1
                            if quiet >= _PING_EVERY:
                                quiet = 0
                                await pubsub.ping()
                            continue
                        if message.get("type") == "message":
                            self._on_message(message["data"])
            except FAILURES as exc:
                self.listening.clear()
                self._health.failed(exc)
            except Exception:
                self.listening.clear()
                logger.exception("unexpected error listening for bans")
            await asyncio.sleep(PROBE_INTERVAL)

    @contextlib.asynccontextmanager
    async def _subscribed(self) -> AsyncIterator[Any]:
        pubsub = self._store.client().pubsub()
        try:
            await pubsub.subscribe(self._keys.ban_channel)
            yield pubsub
        finally:
            with contextlib.suppress(*FAILURES):
                await pubsub.aclose()

    async def _load(self) -> None:
        now = time.monotonic()
        loaded = await _scan_bans(self._store, self._keys)
        self._until = {ban.offender: now + ban.seconds for ban in loaded}

    def _on_message(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        words = text.split()
        if len(words) >= 3 and words[0] == "ban":
            number = int(words[3]) if len(words) > 3 else 0
            self._heard(Ban(words[1], int(words[2]) / 1000, number))
        elif len(words) == 2 and words[0] == "unban":
            self._until.pop(words[1], None)


async def _in_a_task() -> None:
    """Yield once when started eagerly (:mod:`ftp_cluster.worker.eager`) outside a task.

    The client's timeouts need a current task, which an eagerly started
    request only gets at its first suspension (Python 3.11).
    """
    if asyncio.current_task() is None:
        await asyncio.sleep(0)


async def _scan_bans(store: RedisStore, keys: Keys) -> list[Ban]:
    """Every ban in Redis under ``keys``' namespace (a SCAN: for loading and listing only)."""
    client = store.client()
    names = [key async for key in client.scan_iter(match=keys.ban_pattern, count=1000)]
    if not names:
        return []
    store.commands += 1
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.pttl(name)
            pipe.get(name)
        replies = await pipe.execute()
    found = []
    for index, name in enumerate(names):
        ms, number = replies[2 * index], replies[2 * index + 1]
        if isinstance(ms, int) and ms > 0 and number is not None:
            key = name.decode() if isinstance(name, bytes) else name
            found.append(Ban(keys.offender_of(key), ms / 1000, int(number)))
    return found
