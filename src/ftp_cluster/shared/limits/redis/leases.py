"""Connection leases in Redis: every worker's sessions counted cluster-wide.

Each count (the server's, one per client IP, one per user) is a sorted set
whose members are ``"<worker_id>/<session_id>"`` scored by their expiry on
the Redis clock. Admission purges expired members, compares the
cardinality with the cap and adds the member, atomically. Lease changes
(admit, login, logout, release) of the sessions that ask in the same
event-loop tick, or while the previous batch is in flight, go to Redis
together as one script call that applies them in order (see
:mod:`.batching`): each decision is as exact as if it ran alone, and a busy
worker pays one round trip for many sessions. Each worker also keeps an
index hash of its leases, so that:

* :meth:`RedisLeases.resync` extends all of a worker's leases in one call
  (every ``lease_ttl / 3``, see :mod:`.health`), and re-adds any that Redis
  lost (restart, failover);
* the supervisor frees a dead worker's slots at once with
  :func:`.admin.release_worker_leases`, and a host that vanishes entirely
  loses its slots when the leases expire.

A change that no cap counts (an admission with neither a server nor a
per-IP cap, a login without a user cap, and the releases of a session that
only ever had such leases) is sent in the same batches, but its caller does
not wait for it: Redis could not refuse it, so the session goes on at once.
Such a change may also wait up to ``UNAWAITED_LINGER`` for others to share
its call: a worker churning through uncapped sessions then calls Redis a
few dozen times a second, not once per batch of whoever arrived together.
A session that has come and gone by the time its batch leaves is not sent
at all (:func:`.lease_changes.coalesce`). :meth:`RedisLeases.settled` waits
for such changes to land. Far below its caps, a worker also holds a few
spare slots per busy client IP, so that most capped sessions need not wait
for Redis either (:mod:`.spares`).

A local :class:`~ftp_cluster.shared.limits.local.LocalLeases` mirrors this
worker's sessions at all times, so its counts are right the moment Redis is
down (:mod:`.health`) and it has to stand in: ``on_failure="closed"``
refuses new sessions (``Refusal.UNAVAILABLE``), ``"open"`` admits this
worker's share of each cap; logins use the share in both modes. Once Redis
answers again, :meth:`RedisLeases.resync` re-registers every lease held and
drops those of the sessions that ended meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ftp_cluster.shared.limits.base import ConnectionCaps, Leases, Refusal
from ftp_cluster.shared.limits.local import LocalLeases
from ftp_cluster.shared.limits.redis.batching import Batcher
from ftp_cluster.shared.limits.redis.connection import CommandBuffer, bulk
from ftp_cluster.shared.limits.redis.gate import Gate
from ftp_cluster.shared.limits.redis.health import FAILURES, Health
from ftp_cluster.shared.limits.redis.lease_changes import (
    Admit,
    LeaseChange,
    Login,
    Release,
    Swap,
    coalesce,
)
from ftp_cluster.shared.limits.redis.schema import LEASES, REFRESH, RELEASE_WORKER, Keys
from ftp_cluster.shared.limits.redis.spares import SPARE_PREFIX, Spare, SparePool
from ftp_cluster.shared.limits.redis.store import RedisStore

__all__ = ["UNAWAITED_LINGER", "RedisLeases"]

logger = logging.getLogger("ftp_cluster.limits")

#: Seconds a lease change nobody waits for may wait to share a call with others.
UNAWAITED_LINGER = 0.02

#: Lease changes considered together: the more, the more of them cancel out
#: (see :func:`.lease_changes.coalesce`); what is left goes in script calls of at most
#: ``_OPERATIONS_PER_CALL``, so that no call keeps Redis busy for long.
_CHANGES_PER_BATCH = 1024
_OPERATIONS_PER_CALL = 256

_NO_CAP = -1
_COUNT_ONLY = ConnectionCaps()  # the mirror counts; Redis has decided
_ADMIT_RESULTS = {0: None, 1: Refusal.SERVER_FULL, 2: Refusal.IP_FULL}

# Operation codes of lua/leases.lua, and its "no key" position, packed.
_OP_ADMIT, _OP_LOGIN, _OP_SWAP, _OP_RELEASE = (bulk(code) for code in "alsr")
_NONE = bulk(0)


class RedisLeases(Leases):
    """The leases of one worker, ``worker_id``, one of ``workers`` sharing the counts.

    ``local`` is the in-process mirror and fallback, built with
    ``share=workers``. Every Redis call runs under ``health``'s guard; the
    backend has ``health`` watch this part (see :class:`.health.RedisPart`).
    An instance belongs to the event loop it is first used on.
    """

    def __init__(
        self,
        store: RedisStore,
        health: Health,
        keys: Keys,
        local: LocalLeases,
        *,
        worker_id: str,
        workers: int,
        lease_ttl: float,
        spare_slots: int,
    ) -> None:
        self._store = store
        self._health = health
        self._guard = health.guard
        self._keys = keys
        self._local = local  # this worker's sessions, always; enforces shares in outages
        self._worker_id = worker_id
        self._workers = workers
        self._ttl_ms = max(1, round(lease_ttl * 1000))
        # Sessions that ended while their release could not be sent.
        self._ended_offline: set[str] = set()
        # Sessions none of whose leases count against a cap (see admit()),
        # and those standing on a spare slot.
        self._uncapped: set[str] = set()
        self._spares = SparePool(spare_slots)
        self._spares_fit: ConnectionCaps | None = None  # the caps the spares are fit to
        self._gate = Gate()
        self._changes: Batcher[LeaseChange, int] = Batcher(
            self._send_changes,
            max_batch=_CHANGES_PER_BATCH,
            linger=UNAWAITED_LINGER,
            on_posted=self._posted,
        )

    def sessions(self) -> int:
        """How many sessions hold leases here."""
        return self._local.sessions()

    async def settled(self) -> None:
        """Wait until every lease change made so far has run in Redis (or failed).

        Changes that no cap counts are sent without their caller waiting for
        them; this is for whoever must see them in Redis.
        """
        async with self._gate.exclusive():
            pass

    async def close(self) -> None:
        """Give up every lease: in Redis at once if it is up, else they expire there."""
        held = self._local.holdings() or self._spares.held()
        if self._health.healthy and self._store.opened and held:
            # If this fails the leases expire after lease_ttl.
            with contextlib.suppress(*FAILURES):
                await self._store.eval(
                    RELEASE_WORKER, [self._keys.index], [self._keys.leases, self._worker_id]
                )
        for holding in self._local.holdings():
            await self._local.release(holding.session_id)

    # -- connections ---------------------------------------------------------

    async def admit(self, session_id: str, ip: str, caps: ConnectionCaps) -> Refusal | None:
        async with self._gate:
            if self._health.healthy:
                change = Admit(session_id, ip, _cap(caps.server), _cap(caps.per_ip))
                if change.server_cap == change.ip_cap == _NO_CAP:
                    # Nothing Redis could answer would refuse this session, so
                    # it need not wait: its leases are still taken, to be
                    # counted by sessions that do have caps, and by status.
                    self._send_unawaited(change)
                    self._uncapped.add(session_id)
                    return await self._local.admit(session_id, ip, _COUNT_ONLY)
                if caps is not self._spares_fit:
                    self._spares.fit(caps.server, caps.per_ip, self._workers)
                    self._spares_fit = caps
                spare = self._spares.take(session_id, ip)
                if spare is not None:
                    # A slot Redis granted ahead of need: nothing to ask.
                    self._send_unawaited(Swap(spare.spare_id, session_id, ip))
                    self._uncapped.add(session_id)
                    return await self._local.admit(session_id, ip, _COUNT_ONLY)
                with self._guard:
                    refusal = _ADMIT_RESULTS[await self._admit_in_redis(change)]
                    if refusal is None:
                        await self._local.admit(session_id, ip, _COUNT_ONLY)
                    return refusal
                # The script may have run before the reply was lost.
                self._ended_offline.add(session_id)
            if self._health.on_failure == "closed":
                return Refusal.UNAVAILABLE
            return await self._local.admit(session_id, ip, caps)

    async def login(self, session_id: str, user: str, maximum: int | None) -> Refusal | None:
        async with self._gate:
            if self._health.healthy:
                previous = self._local.holding(session_id)
                change = Login(
                    session_id, user, _cap(maximum), None if previous is None else previous.user
                )
                if change.cap == _NO_CAP:
                    self._send_unawaited(change)
                    return await self._local.login(session_id, user, None)
                self._uncapped.discard(session_id)
                with self._guard:
                    if await self._changes.submit(change) == 0:
                        return await self._local.login(session_id, user, None)
                    await self._local.logout(session_id)
                    return Refusal.USER_FULL
            self._uncapped.discard(session_id)
            refusal = await self._local.login(session_id, user, maximum)
            self._note_offline_end(session_id)
            return refusal

    async def logout(self, session_id: str) -> None:
        async with self._gate:
            holding = self._local.holding(session_id)
            await self._local.logout(session_id)
            if holding is not None and holding.user is not None:
                change = Release(session_id, None, holding.user)
                await self._send_release(change, wait=session_id not in self._uncapped)

    async def release(self, session_id: str) -> None:
        async with self._gate:
            holding = self._local.holding(session_id)
            if holding is None:
                return
            await self._local.release(session_id)
            uncapped = session_id in self._uncapped
            self._uncapped.discard(session_id)
            spare = self._spares.give_back(session_id, keep=self._health.healthy)
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
            except FAILURES:
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
        sessions = self._local.sessions_from(change.ip)
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
        if self._health.healthy and not wait:
            self._send_unawaited(change)
            return
        if self._health.healthy:
            with self._guard:
                await self._changes.submit(change)
                return
        # A changed login of a live session is fixed by the next resync; a
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
        results = await self._store.eval_packed(LEASES, keys, args)
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
        healthy = self._health.healthy
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
        failed = self._health.failed(exc)
        if not failed and not isinstance(exc, asyncio.CancelledError):
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
        if self._local.holding(session_id) is None:
            self._ended_offline.add(session_id)

    # -- health.RedisPart ----------------------------------------------------

    def lost(self) -> None:
        """Redis went away: free spares are of no use until it is back, and it may lose them."""
        self._ended_offline.update(spare.spare_id for spare in self._spares.drop_free())

    @contextlib.asynccontextmanager
    async def resync(self) -> AsyncIterator[str]:
        """Make Redis hold exactly this worker's leases; lease changes wait meanwhile."""
        async with self._gate.exclusive():
            readded, dropped = await self._sync()
            yield f"{readded} leases re-registered, {dropped} stale leases dropped"

    async def check(self) -> bool:
        """Whether Redis lost this worker's leases; else give back the spares left idle.

        A restart while this worker sent nothing goes unnoticed otherwise
        until the next resync; checking the index is one cheap command.
        """
        index = self._keys.index
        if self._local.sessions() and int(await self._store.command("EXISTS", index)) == 0:
            return True
        for spare in self._spares.trim():
            await self._send_release(Release(spare.spare_id, spare.ip, None), wait=False)
        return False

    async def _sync(self) -> tuple[int, int]:
        """Make Redis hold exactly this worker's leases (under the exclusive gate)."""
        ended = sorted(self._ended_offline)
        args: list[Any] = [self._keys.leases, self._worker_id, self._ttl_ms, len(ended), *ended]
        for holding in self._local.holdings():
            args += [holding.session_id, holding.ip or "", holding.user or ""]
        for spare in self._spares.held():
            args += [spare.spare_id, spare.ip, ""]
        readded, dropped = await self._store.eval(REFRESH, [self._keys.index], args)
        self._ended_offline.difference_update(ended)
        return int(readded), int(dropped)


def _cap(limit: int | None) -> int:
    return _NO_CAP if limit is None else limit


def _half(cap: int) -> int:
    return cap if cap == _NO_CAP else cap // 2
