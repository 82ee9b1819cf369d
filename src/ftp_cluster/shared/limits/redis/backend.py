"""Cluster-wide limits in Redis, shared by every worker of every host.

Connections are counted as *leases*. Each count (the server's, one per
client IP, one per user) is a sorted set whose members are
``"<worker_id>/<session_id>"`` scored by their expiry on the Redis clock.
Admission purges expired members, compares the cardinality with the cap and
adds the member, atomically. Lease changes (admit, login, logout, release)
of the sessions that ask in the same event-loop tick, or while the previous
batch is in flight, go to Redis together as one script call that applies
them in order (see :mod:`.batching`): each decision is as exact as if it ran
alone, and a busy worker pays one round trip for many sessions. Each worker
also keeps an index hash of its leases, so that:

* a background task extends all of a worker's leases every ``lease_ttl / 3``
  in one call, and re-adds any that Redis lost (restart, failover);
* the supervisor frees a dead worker's slots at once with
  :func:`release_worker_leases`, and a host that vanishes entirely loses
  its slots when the leases expire.

A change that no cap counts (an admission with neither a server nor a
per-IP cap, a login without a user cap, and the releases of a session that
only ever had such leases) is sent in the same batches, but its caller does
not wait for it: Redis could not refuse it, so the session goes on at once.
Such a change may also wait up to ``UNAWAITED_LINGER`` for others to share
its call: a worker churning through uncapped sessions then calls Redis a
few dozen times a second, not once per batch of whoever arrived together.
A session that has come and gone by the time its batch leaves is not sent
at all (:func:`.lease_changes.coalesce`). :meth:`RedisLimits.settled` waits for such
changes to land.

Bandwidth buckets are hashes updated by one script call per :meth:`reserve`
for all buckets at once, with the Redis clock deciding refills.

While Redis is unreachable, nothing crashes or hangs: a local
:class:`~ftp_cluster.shared.limits.local.LocalLimits` with ``share=workers``
takes over. It mirrors this worker's sessions at all times, so its counts
are right the moment it is needed. ``on_failure="closed"`` refuses new
sessions (``Refusal.UNAVAILABLE``), ``"open"`` admits this worker's share of
each cap; logins and bandwidth use the share in both modes. The background
task probes Redis and, once it answers, re-registers every lease held and
returns to cluster-wide enforcement.

Key names and scripts are in :mod:`.schema`; what the supervisor does to
the shared state from outside a worker is in :mod:`.admin`.
Requires Redis 5 or later (scripts read ``TIME`` before writing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Literal

import redis
import redis.asyncio
import redis.exceptions

from ftp_cluster.shared.limits.base import (
    BackendStats,
    Bandwidth,
    Bucket,
    ConnectionCaps,
    Leases,
    LimitsBackend,
    Refusal,
)
from ftp_cluster.shared.limits.bucket import EFFECTIVE_BURST_SECONDS
from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.shared.limits.redis.batching import Batcher
from ftp_cluster.shared.limits.redis.connection import (
    AsyncRedis,
    CommandBuffer,
    CommandChannel,
    async_client,
    bulk,
    redact,
)
from ftp_cluster.shared.limits.redis.gate import Gate
from ftp_cluster.shared.limits.redis.lease_changes import (
    Admit,
    LeaseChange,
    Login,
    Release,
    Swap,
    coalesce,
)
from ftp_cluster.shared.limits.redis.schema import (
    LEASES,
    REFRESH,
    RELEASE_WORKER,
    RESERVE,
    SCRIPTS,
    Keys,
    LuaScript,
)
from ftp_cluster.shared.limits.redis.spares import SPARE_PREFIX, Spare, SparePool
from ftp_cluster.shared.settings import RedisSettings

__all__ = ["RedisLimits"]

logger = logging.getLogger("ftp_cluster.limits")

#: Seconds any one Redis socket operation may take before Redis counts as down.
SOCKET_TIMEOUT = 0.5
#: Seconds between reconnection attempts while Redis is down.
PROBE_INTERVAL = 0.5
#: Seconds between checks that Redis still holds this worker's leases.
CHECK_INTERVAL = 1.0
#: Seconds a lease change nobody waits for may wait to share a call with others.
UNAWAITED_LINGER = 0.02

#: Lease changes considered together: the more, the more of them cancel out
#: (see :func:`.lease_changes.coalesce`); what is left goes in script calls of at most
#: ``_OPERATIONS_PER_CALL``, so that no call keeps Redis busy for long.
_CHANGES_PER_BATCH = 1024
_OPERATIONS_PER_CALL = 256

_CHUNK_SECONDS = 0.05
_MIN_CHUNK = 128 * 1024
_NO_CAP = -1
_COUNT_ONLY = ConnectionCaps()  # the mirror counts; Redis has decided
_FAILURES: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    OSError,
    asyncio.TimeoutError,
)


_ADMIT_RESULTS = {0: None, 1: Refusal.SERVER_FULL, 2: Refusal.IP_FULL}

# Operation codes of lua/leases.lua, and its "no key" position, packed.
_OP_ADMIT, _OP_LOGIN, _OP_SWAP, _OP_RELEASE = (bulk(code) for code in "alsr")
_NONE = bulk(0)


class RedisLimits(LimitsBackend, Leases, Bandwidth):
    """Limits shared through Redis by ``workers`` processes (on any number of hosts).

    ``worker_id`` must be unique among everything using ``namespace`` on this
    Redis and stable for the life of the process; the supervisor passes the
    same id to :func:`release_worker_leases` when the process dies. An
    instance belongs to the event loop it is first used on.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        worker_id: str,
        workers: int = 1,
        on_failure: Literal["closed", "open"] = "closed",
        lease_ttl: float = 15.0,
        socket_timeout: float = SOCKET_TIMEOUT,
        probe_interval: float = PROBE_INTERVAL,
        spare_slots: int = RedisSettings.spare_slots,
    ) -> None:
        if on_failure not in ("closed", "open"):
            raise ValueError(f"on_failure must be 'closed' or 'open', not {on_failure!r}")
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl!r}")
        self._url = url
        self._keys = Keys(namespace, worker_id)
        self._worker_id = worker_id
        self._on_failure = on_failure
        self._ttl_ms = max(1, round(lease_ttl * 1000))
        self._refresh_interval = lease_ttl / 3
        self._socket_timeout = socket_timeout
        self._probe_interval = probe_interval
        # Mirrors this worker's sessions always; enforces shares during outages.
        fallback = LocalLimits(share=workers)
        self._fallback = fallback.leases
        self._fallback_bandwidth = fallback.bandwidth
        self.leases = self.bandwidth = self
        # Sessions that ended while their release could not be sent.
        self._ended_offline: set[str] = set()
        # Sessions none of whose leases count against a cap (see admit()),
        # and those standing on a spare slot.
        self._uncapped: set[str] = set()
        self._spares = SparePool(spare_slots)
        self._workers = workers
        self._spares_fit: ConnectionCaps | None = None  # the caps the spares are fit to
        self._redis: AsyncRedis | None = None
        self._channel: CommandChannel | None = None  # for the lease batches
        self._healthy = True
        self._commands = 0
        self._gate = Gate()
        self._changes: Batcher[LeaseChange, int] = Batcher(
            self._send_changes,
            max_batch=_CHANGES_PER_BATCH,
            linger=UNAWAITED_LINGER,
            on_posted=self._posted,
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        try:
            await self._load_scripts()
        except _FAILURES as exc:
            self._lost(exc)
        self._task = asyncio.get_running_loop().create_task(
            self._maintain(), name=f"redis-limits-{self._worker_id}"
        )

    async def settled(self) -> None:
        """Wait until every lease change made so far has run in Redis (or failed).

        Changes that no cap counts are sent without their caller waiting for
        them; this is for whoever must see them in Redis.
        """
        async with self._gate.exclusive():
            pass

    async def close(self) -> None:
        await self.settled()
        task, self._task = self._task, None
        if task is not None:
            # redis-py awaits asyncio.wait_for, which on Python 3.11 can swallow
            # a cancellation (CPython gh-86296): repeat it until the task ends.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        held = self._fallback.holdings() or self._spares.held()
        if self._healthy and self._redis is not None and held:
            # If this fails the leases expire after lease_ttl.
            with contextlib.suppress(*_FAILURES):
                await self._eval(
                    RELEASE_WORKER, [self._keys.index], [self._keys.leases, self._worker_id]
                )
        for holding in self._fallback.holdings():
            await self._fallback.release(holding.session_id)
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.disconnect()
        if self._redis is not None:
            redis_client, self._redis = self._redis, None
            await redis_client.aclose()

    # -- connections ---------------------------------------------------------

    async def admit(self, session_id: str, ip: str, caps: ConnectionCaps) -> Refusal | None:
        async with self._gate:
            if self._healthy:
                change = Admit(session_id, ip, _cap(caps.server), _cap(caps.per_ip))
                if change.server_cap == change.ip_cap == _NO_CAP:
                    # Nothing Redis could answer would refuse this session, so
                    # it need not wait: its leases are still taken, to be
                    # counted by sessions that do have caps, and by status.
                    self._send_unawaited(change)
                    self._uncapped.add(session_id)
                    return await self._fallback.admit(session_id, ip, _COUNT_ONLY)
                if caps is not self._spares_fit:
                    self._spares.fit(caps.server, caps.per_ip, self._workers)
                    self._spares_fit = caps
                spare = self._spares.take(session_id, ip)
                if spare is not None:
                    # A slot Redis granted ahead of need: nothing to ask.
                    self._send_unawaited(Swap(spare.spare_id, session_id, ip))
                    self._uncapped.add(session_id)
                    return await self._fallback.admit(session_id, ip, _COUNT_ONLY)
                try:
                    result = await self._admit_in_redis(change)
                except _FAILURES as exc:
                    self._lost(exc)
                    # The script may have run before the reply was lost.
                    self._ended_offline.add(session_id)
                else:
                    refusal = _ADMIT_RESULTS[result]
                    if refusal is None:
                        await self._fallback.admit(session_id, ip, _COUNT_ONLY)
                    return refusal
            if self._on_failure == "closed":
                return Refusal.UNAVAILABLE
            return await self._fallback.admit(session_id, ip, caps)

    async def login(self, session_id: str, user: str, maximum: int | None) -> Refusal | None:
        async with self._gate:
            if self._healthy:
                previous = self._fallback.holding(session_id)
                change = Login(
                    session_id, user, _cap(maximum), None if previous is None else previous.user
                )
                if change.cap == _NO_CAP:
                    self._send_unawaited(change)
                    return await self._fallback.login(session_id, user, None)
                self._uncapped.discard(session_id)
                try:
                    result = await self._changes.submit(change)
                except _FAILURES as exc:
                    self._lost(exc)
                else:
                    if result == 0:
                        return await self._fallback.login(session_id, user, None)
                    await self._fallback.logout(session_id)
                    return Refusal.USER_FULL
            self._uncapped.discard(session_id)
            refusal = await self._fallback.login(session_id, user, maximum)
            self._note_offline_end(session_id)
            return refusal

    async def logout(self, session_id: str) -> None:
        async with self._gate:
            holding = self._fallback.holding(session_id)
            await self._fallback.logout(session_id)
            if holding is not None and holding.user is not None:
                change = Release(session_id, None, holding.user)
                await self._send_release(change, wait=session_id not in self._uncapped)

    async def release(self, session_id: str) -> None:
        async with self._gate:
            holding = self._fallback.holding(session_id)
            if holding is None:
                return
            await self._fallback.release(session_id)
            uncapped = session_id in self._uncapped
            self._uncapped.discard(session_id)
            spare = self._spares.give_back(session_id, keep=self._healthy)
            if spare is None:
                await self._send_release(
                    Release(session_id, holding.ip, holding.user), wait=not uncapped
                )
                return
            # A session that stood on a spare leaves its slot as a spare.
            swap = Swap(session_id, spare.spare_id, spare.ip)
            self._send_unawaited(swap)
            if holding.user is not None:
                await self._send_release(Release(session_id, None, holding.user), wait=not uncapped)

    async def _admit_in_redis(self, change: Admit) -> int:
        """The script's answer to ``change``, asking for spares along with it."""
        answer = self._changes.push(change)
        self._ask_for_spares(change)
        result = await answer
        if result and self._spares.free_count():
            # This worker's own spares must not refuse its own sessions: give
            # them back, and ask again.
            dropped = self._spares.drop_free()
            returned = [
                self._changes.push(Release(spare.spare_id, spare.ip, None)) for spare in dropped
            ]
            try:
                await asyncio.gather(*returned)
            except _FAILURES:
                self._ended_offline.update(spare.spare_id for spare in dropped)
                raise
            result = await self._changes.submit(change)
        return result

    def _ask_for_spares(self, change: Admit) -> None:
        """Ask for spare slots after ``change``, while its counts are low.

        The halved caps make Redis grant them only below half of each cap
        (see :mod:`.spares`); they go unawaited, and :meth:`_posted` hears
        the answers.
        The asks are queued once the current callbacks have run, so they
        follow every admission that arrived with ``change`` into Redis: a
        spare never takes a slot that a session of the same burst needed.
        """
        sessions = self._fallback.sessions_from(change.ip)
        if not sessions or not self._spares.enabled:
            return
        spares = self._spares.ask(change.ip, sessions)
        if spares:
            self._gate.hold()
            caps = (_half(change.server_cap), _half(change.ip_cap))
            asyncio.get_running_loop().call_soon(self._push_asks, spares, caps)

    def _push_asks(self, spares: list[Spare], caps: tuple[int, int]) -> None:
        for spare in spares:
            self._send_unawaited(Admit(spare.spare_id, spare.ip, *caps))
        self._gate.leave()

    async def _send_release(self, change: Release, *, wait: bool) -> None:
        """Free leases; ``wait=False`` when no cap counts them, so no session waits for it."""
        if self._healthy and not wait:
            self._send_unawaited(change)
            return
        if self._healthy:
            try:
                await self._changes.submit(change)
            except _FAILURES as exc:
                self._lost(exc)
            else:
                return
        # A changed login of a live session is fixed by the next refresh; a
        # session that is gone must be named to it.
        self._note_offline_end(change.session_id)

    async def _send_changes(self, changes: list[LeaseChange]) -> list[int]:
        """A batch of lease changes in as few script calls as it takes; one result each."""
        operations, slots = coalesce(changes)
        results: list[int] = []
        for start in range(0, len(operations), _OPERATIONS_PER_CALL):
            results += await self._send_operations(operations[start : start + _OPERATIONS_PER_CALL])
        return [0 if slot is None else results[slot] for slot in slots]

    async def _send_operations(self, changes: list[LeaseChange]) -> list[int]:
        keys = [self._keys.index, self._keys.server]
        # Per address or user named in the call: its key's position alone
        # (for a release), and the position with the name (admit, login, swap).
        places: dict[str, tuple[bytes, bytes]] = {}

        def place(key: str, name: str) -> tuple[bytes, bytes]:
            found = places.get(key)
            if found is None:
                keys.append(key)
                position = bulk(len(keys))
                found = places[key] = (position, position + bulk(name))
            return found

        args = CommandBuffer(self._worker_id, self._ttl_ms)
        add = args.add
        # Each operation goes in as one piece, in the layout of lua/leases.lua:
        # packing a batch argument by argument cost a worker ~3 us per change.
        for change in changes:
            if isinstance(change, Admit):
                ip = place(self._keys.ip(change.ip), change.ip)[1]
                caps = bulk(change.server_cap) + bulk(change.ip_cap)
                add(_OP_ADMIT + bulk(change.session_id) + ip + caps, 6)
            elif isinstance(change, Login):
                user = place(self._keys.user(change.user), change.user)[1]
                previous = _NONE
                if change.previous is not None:
                    previous = place(self._keys.user(change.previous), change.previous)[0]
                add(_OP_LOGIN + bulk(change.session_id) + user + bulk(change.cap) + previous, 6)
            elif isinstance(change, Swap):
                ip = place(self._keys.ip(change.ip), change.ip)[1]
                add(_OP_SWAP + bulk(change.session_id) + bulk(change.new_id) + ip, 5)
            else:
                ip = _NONE if change.ip is None else place(self._keys.ip(change.ip), change.ip)[0]
                user = _NONE
                if change.user is not None:
                    user = place(self._keys.user(change.user), change.user)[0]
                add(_OP_RELEASE + bulk(change.session_id) + ip + user, 4)
        results = await self._eval_packed(LEASES, keys, args)
        return [int(result) for result in results]

    def _send_unawaited(self, change: LeaseChange) -> None:
        """Send ``change`` with the next batch; its caller goes on at once.

        The change holds the gate until it has run, as an awaited one does,
        so that no refresh snapshot races it; :meth:`_posted` hears how it went.
        """
        self._gate.hold()
        self._changes.post(change)

    def _posted(self, changes: list[LeaseChange], outcome: Sequence[int] | BaseException) -> None:
        """The changes sent by :meth:`_send_unawaited` in one batch have run (or not)."""
        self._gate.leave(len(changes))
        if isinstance(outcome, BaseException):
            self._not_posted(changes, outcome)
            return
        healthy = self._healthy
        for change, result in zip(changes, outcome, strict=True):
            if isinstance(change, Swap):
                if result and change.new_id.startswith(SPARE_PREFIX):
                    # Redis had lost the session's lease: no slot to keep.
                    self._spares.forget(Spare(change.new_id, change.ip))
            elif isinstance(change, Admit) and change.session_id.startswith(SPARE_PREFIX):
                granted = result == 0
                if granted and not healthy:
                    # Granted in the instant before an outage: Redis may lose it.
                    self._ended_offline.add(change.session_id)
                spare = Spare(change.session_id, change.ip)
                self._spares.answered(spare, granted=granted and healthy)

    def _not_posted(self, changes: list[LeaseChange], exc: BaseException) -> None:
        failed = isinstance(exc, _FAILURES)
        if failed:
            self._lost(exc)
        elif not isinstance(exc, asyncio.CancelledError):
            logger.error("unexpected error in a lease change", exc_info=exc)
        for change in changes:
            if isinstance(change, Admit) and change.session_id.startswith(SPARE_PREFIX):
                self._spares.answered(Spare(change.session_id, change.ip), granted=False)
                self._ended_offline.add(change.session_id)  # it may have run
            elif failed:
                # As for an awaited change: the mirror holds the truth, and the
                # resync after the outage makes Redis hold it too.
                self._note_offline_end(change.session_id)
                if isinstance(change, Swap):
                    self._note_offline_end(change.new_id)

    def _note_offline_end(self, session_id: str) -> None:
        if self._fallback.holding(session_id) is None:
            self._ended_offline.add(session_id)

    # -- bandwidth -----------------------------------------------------------

    async def reserve(self, buckets: Sequence[Bucket], amount: int) -> float:
        if not buckets:
            return 0.0
        if self._healthy:
            keys = [self._keys.bucket(bucket.key) for bucket in buckets]
            args = [amount, EFFECTIVE_BURST_SECONDS, *(bucket.rate for bucket in buckets)]
            try:
                wait_us = await self._eval(RESERVE, keys, args)
            except _FAILURES as exc:
                self._lost(exc)
            else:
                return int(wait_us) / 1_000_000
        return await self._fallback_bandwidth.reserve(buckets, amount)

    def chunk_size(self, rate: int) -> int:
        """At least 128 KiB (at most 8 round trips per MiB), else ~50 ms of ``rate``."""
        return max(_MIN_CHUNK, int(rate * _CHUNK_SECONDS))

    def stats(self) -> BackendStats:
        return BackendStats(
            healthy=self._healthy,
            commands_sent=self._commands,
            sessions=self._fallback.sessions(),
        )

    # -- Redis plumbing ------------------------------------------------------

    def _client(self) -> redis.asyncio.Redis:
        if self._redis is None:
            self._redis = async_client(self._url, timeout=self._socket_timeout)
        return self._redis.client

    def _lease_channel(self) -> CommandChannel:
        if self._channel is None:
            self._channel = CommandChannel(self._client(), timeout=self._socket_timeout)
        return self._channel

    async def _command(self, *args: Any) -> Any:
        self._commands += 1
        return await self._client().execute_command(*args)  # type: ignore[no-untyped-call]

    async def _load_scripts(self) -> None:
        # One round trip for all of them, still one command each.
        self._commands += len(SCRIPTS)
        async with self._client().pipeline(transaction=False) as pipe:
            for script in SCRIPTS:
                pipe.script_load(script.source)
            await pipe.execute()

    async def _eval_packed(
        self, script: LuaScript, keys: Sequence[str], args: CommandBuffer
    ) -> Any:
        """:meth:`_eval` for arguments packed beforehand."""
        command = CommandBuffer("EVALSHA", script.sha, len(keys), *keys)
        command.extend(args)
        try:
            self._commands += 1
            return await self._lease_channel().call(command)
        except redis.exceptions.NoScriptError:
            self._wake.set()
            await self._load_scripts()
            self._commands += 1
            return await self._lease_channel().call(command)

    async def _eval(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self._command("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # Redis restarted or failed over since the scripts were loaded:
            # its leases are probably gone too, so re-register them now.
            self._wake.set()
            await self._load_scripts()
            return await self._command("EVALSHA", script.sha, len(keys), *keys, *args)

    def _lost(self, exc: BaseException) -> None:
        if not self._healthy:
            return
        self._healthy = False
        # Free spares are of no use until Redis is back, which may have lost them.
        self._ended_offline.update(spare.spare_id for spare in self._spares.drop_free())
        logger.warning(
            "Redis at %s is unreachable (%s: %s); limits fall back to this worker's share"
            " (%s mode) until it is back",
            redact(self._url),
            type(exc).__name__,
            exc,
            self._on_failure,
        )
        self._wake.set()

    # -- background ----------------------------------------------------------

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + self._refresh_interval
        while True:
            if self._healthy:
                delay = min(CHECK_INTERVAL, max(0.0, refresh_at - loop.time()))
            else:
                delay = self._probe_interval
            woken = await self._sleep(delay)
            try:
                if not self._healthy:
                    await self._probe()
                elif woken or loop.time() >= refresh_at or await self._leases_lost():
                    await self._refresh()
                else:
                    for spare in self._spares.trim():
                        idle = Release(spare.spare_id, spare.ip, None)
                        await self._send_release(idle, wait=False)
                    continue
                refresh_at = loop.time() + self._refresh_interval
            except Exception:
                # The task must outlive any surprise, or leases silently expire.
                logger.exception("unexpected error maintaining Redis leases")

    async def _sleep(self, delay: float) -> bool:
        """Sleep ``delay`` seconds or until woken; say whether woken."""
        # Not wait_for: on Python 3.11 it swallows a cancellation that arrives
        # as the event fires, and close() would then wait for this task forever.
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            return False
        self._wake.clear()
        return True

    async def _leases_lost(self) -> bool:
        """Whether Redis lost this worker's leases (restarted between two calls).

        A restart while this worker sent nothing goes unnoticed otherwise
        until the next refresh; checking the index is one cheap command.
        """
        if not self._fallback.sessions():
            return False
        try:
            exists = await self._command("EXISTS", self._keys.index)
        except _FAILURES as exc:
            self._lost(exc)
            return False
        return int(exists) == 0

    async def _refresh(self) -> None:
        async with self._gate.exclusive():
            try:
                await self._sync()
            except _FAILURES as exc:
                self._lost(exc)

    async def _probe(self) -> None:
        # Pooled connections from before the outage are dead even once Redis is
        # back: the first command on one would fail and start a false outage.
        with contextlib.suppress(*_FAILURES):
            await self._client().connection_pool.disconnect(inuse_connections=False)
            await self._lease_channel().disconnect()
        try:
            await self._command("PING")
        except _FAILURES:
            return
        async with self._gate.exclusive():
            try:
                readded, dropped = await self._sync()
            except _FAILURES:
                return
            self._healthy = True
        logger.info(
            "Redis at %s is reachable again; cluster-wide limits restored"
            " (%d leases re-registered, %d stale leases dropped)",
            redact(self._url),
            readded,
            dropped,
        )

    async def _sync(self) -> tuple[int, int]:
        """Make Redis hold exactly this worker's leases (under the exclusive gate)."""
        ended = sorted(self._ended_offline)
        args: list[Any] = [self._keys.leases, self._worker_id, self._ttl_ms, len(ended), *ended]
        for holding in self._fallback.holdings():
            args += [holding.session_id, holding.ip or "", holding.user or ""]
        for spare in self._spares.held():
            args += [spare.spare_id, spare.ip, ""]
        readded, dropped = await self._eval(REFRESH, [self._keys.index], args)
        self._ended_offline.difference_update(ended)
        return int(readded), int(dropped)


def _cap(limit: int | None) -> int:
    return _NO_CAP if limit is None else limit


def _half(cap: int) -> int:
    return cap if cap == _NO_CAP else cap // 2
