"""Whether Redis can be used now: the one place a Redis failure becomes an outage.

Every call a part of the Redis backend makes to Redis runs under
:attr:`Health.guard`::

    if health.healthy:
        with health.guard:
            return await store.eval(...)  # the cluster-wide answer
    return await local.reserve(...)  # reached when Redis is down, or just failed

A Redis error, an OS error or a timeout inside the block ends the block
instead of reaching the caller, and the first one flips the backend into
outage mode: :attr:`Health.healthy` turns false, each part hears of it
(:meth:`RedisPart.lost`), one warning is logged, and the background task
wakes up to probe. Until Redis is back, the parts answer from their
in-process fallbacks (``on_failure`` says how strictly). Failures that
arrive as a value rather than raised (the outcome of a batch nobody awaited)
go to :meth:`Health.failed` instead.

The background task also keeps Redis in line with what the parts hold
while it is healthy: every ``resync_interval`` (and at once when Redis
turns out to have forgotten the scripts, so it restarted) it enters each
part's :meth:`~RedisPart.resync`; once a second it asks each part to
:meth:`~RedisPart.check`. While Redis is down it probes every
``probe_interval`` and, once Redis answers, resyncs every part and only then
turns healthy again, with one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal, Protocol

import redis.exceptions

from ftp_cluster.shared.limits.redis.connection import redact
from ftp_cluster.shared.limits.redis.store import RedisStore

__all__ = ["CHECK_INTERVAL", "FAILURES", "PROBE_INTERVAL", "Guard", "Health", "RedisPart"]

logger = logging.getLogger("ftp_cluster.limits")

#: What makes Redis count as unreachable. Anything else is a bug and propagates.
FAILURES: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    # A cluster client's own errors (no node reachable, a slot not served)
    # do not derive from RedisError.
    redis.exceptions.RedisClusterException,
    OSError,
    asyncio.TimeoutError,
)
#: Seconds between reconnection attempts while Redis is down.
PROBE_INTERVAL = 0.5
#: Seconds between the parts' checks while Redis is up.
CHECK_INTERVAL = 1.0


class RedisPart(Protocol):
    """What :class:`Health` calls on a part that keeps state in Redis (:meth:`Health.watch`)."""

    def lost(self) -> None:
        """Redis just became unreachable: called once per outage, before anything else runs."""

    def resync(self) -> AbstractAsyncContextManager[str]:
        """Make Redis hold exactly what this part holds, and hold changes off meanwhile.

        Entering runs the resync and gives a few words on what it did for
        the log line (``"3 leases re-registered, 0 stale leases dropped"``);
        the part's changes wait until the block is left. :class:`Health`
        enters every part's before it turns healthy, and leaves them after,
        so that no change sees the outage end half-way. A failure propagates.
        """

    async def check(self) -> bool:
        """Housekeeping once a second while healthy; True if Redis lost this part's state."""


class Guard:
    """``with guard:``: a failure (:data:`FAILURES`) ends the block and starts the outage.

    One instance serves every call, so that entering it allocates nothing.
    """

    __slots__ = ("_health",)

    def __init__(self, health: Health) -> None:
        self._health = health

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return exc is not None and self._health.failed(exc)


class Health:
    """Outage detection, probing and resync for one Redis backend (see the module docstring).

    ``on_failure`` is the backend's outage policy, for the parts to read and
    the log to name. An instance belongs to the event loop it is started on.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        on_failure: Literal["closed", "open"],
        resync_interval: float,
        probe_interval: float = PROBE_INTERVAL,
        name: str = "redis-limits",
    ) -> None:
        self._store = store
        self.on_failure = on_failure
        self._resync_interval = resync_interval
        self._probe_interval = probe_interval
        self._name = name
        #: False from the first failure until Redis answers again and every part resynced.
        self.healthy = True
        #: The context manager every Redis call of the parts runs under.
        self.guard = Guard(self)
        self._parts: list[RedisPart] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def watch(self, part: RedisPart) -> None:
        """Tell ``part`` of outages and resync it (in the order parts were watched)."""
        self._parts.append(part)

    def failed(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a Redis failure; the first one starts the outage."""
        if not isinstance(exc, FAILURES):
            return False
        if self.healthy:
            self.healthy = False
            for part in self._parts:
                part.lost()
            logger.warning(
                "Redis at %s is unreachable (%s: %s); limits fall back to this worker's share"
                " (%s mode) until it is back",
                redact(self._store.url),
                type(exc).__name__,
                exc,
                self.on_failure,
            )
            self._wake.set()
        return True

    def resync_soon(self) -> None:
        """Resync every part now rather than at the next interval (Redis forgot)."""
        self._wake.set()

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the background task (from inside the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop the background task and wait for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        # redis-py awaits asyncio.wait_for, which on Python 3.11 can swallow
        # a cancellation (CPython gh-86296): repeat it until the task ends.
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # -- background ----------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + self._resync_interval
        while True:
            if self.healthy:
                delay = min(CHECK_INTERVAL, max(0.0, resync_at - loop.time()))
            else:
                delay = self._probe_interval
            woken = await self._sleep(delay)
            try:
                if not self.healthy:
                    await self._probe()
                elif woken or loop.time() >= resync_at or await self._check():
                    with self.guard:
                        await self._resync(recovering=False)
                else:
                    continue
                resync_at = loop.time() + self._resync_interval
            except Exception:
                # The task must outlive any surprise, or leases silently expire.
                logger.exception("unexpected error maintaining Redis leases")

    async def _sleep(self, delay: float) -> bool:
        """Sleep ``delay`` seconds or until woken; say whether woken."""
        # Not wait_for: on Python 3.11 it swallows a cancellation that arrives
        # as the event fires, and stop() would then wait for this task forever.
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            return False
        self._wake.clear()
        return True

    async def _check(self) -> bool:
        for part in self._parts:
            with self.guard:
                if await part.check():
                    return True
            if not self.healthy:
                return False
        return False

    async def _resync(self, *, recovering: bool) -> list[str]:
        """Every part's resync (and, ``recovering``, the outage's end); failures propagate."""
        async with contextlib.AsyncExitStack() as stack:
            notes = [await stack.enter_async_context(part.resync()) for part in self._parts]
            if recovering:
                # Before any part lets its changes in: none may see the outage
                # still on once Redis holds what the parts hold.
                self.healthy = True
        return notes

    async def _probe(self) -> None:
        with contextlib.suppress(*FAILURES):
            await self._store.reconnect()
        try:
            await self._store.command("PING")
            notes = await self._resync(recovering=True)
        except FAILURES:
            return  # still down: no news
        logger.info(
            "Redis at %s is reachable again; cluster-wide limits restored (%s)",
            redact(self._store.url),
            "; ".join(notes) or "nothing to resync",
        )
