"""In-process limits: the library default and the Redis backend's fallback.

One :class:`LocalLimits` counts the sessions of one process, with a
:class:`LocalLeases`, a :class:`LocalBandwidth`, :class:`LocalBans` (its
defender) and :class:`LocalQuotas`. Alone, it enforces the configured limits for
that process. As the fallback of a cluster-wide
backend it is built with ``share=workers`` and then enforces
``ceil(limit / share)`` of every connection cap and bandwidth rate, so that
the workers together stay near the configured totals while they cannot
coordinate.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ftp_cluster.shared.limits.base import (
    BackendStats,
    Ban,
    Bandwidth,
    Bans,
    Bucket,
    ConnectionCaps,
    Leases,
    LimitsBackend,
    Offence,
    QuotaLimits,
    QuotaRefusal,
    Quotas,
    Refusal,
    Usage,
)
from ftp_cluster.shared.limits.bucket import TokenBucket
from ftp_cluster.shared.limits.defender import ESCALATION_WINDOW, Policy
from ftp_cluster.shared.settings import DefenderSettings

__all__ = [
    "Holding",
    "LocalBandwidth",
    "LocalBans",
    "LocalLeases",
    "LocalLimits",
    "LocalQuotas",
    "grant",
    "local_chunk_size",
]

_CHUNK_SECONDS = 0.01
_MIN_CHUNK = 16 * 1024
_MAX_CHUNK = 256 * 1024
#: Bytes one quota reservation of an upload asks for (in-process: cheap, so fine).
_QUOTA_CHUNK = 256 * 1024


def local_chunk_size(rate: int) -> int:
    """About 10 ms of ``rate``: reservations here are cheap, so pace finely."""
    return min(_MAX_CHUNK, max(_MIN_CHUNK, int(rate * _CHUNK_SECONDS)))


class Holding(NamedTuple):
    """The slots one session holds: ``ip`` once admitted, ``user`` once logged in."""

    session_id: str
    ip: str | None
    user: str | None


class LocalLeases(Leases):
    """Connection counts in this process's memory; ``share`` divides every cap."""

    def __init__(self, *, share: int = 1) -> None:
        _check_share(share)
        self._share = share
        self._ips: dict[str, str] = {}
        self._users: dict[str, str] = {}
        self._per_ip: Counter[str] = Counter()
        self._per_user: Counter[str] = Counter()

    def _part(self, limit: int | None) -> int | None:
        return None if limit is None else math.ceil(limit / self._share)

    async def admit(self, session_id: str, ip: str, caps: ConnectionCaps) -> Refusal | None:
        if session_id in self._ips:
            return None
        server_cap = self._part(caps.server)
        if server_cap is not None and len(self._ips) >= server_cap:
            return Refusal.SERVER_FULL
        ip_cap = self._part(caps.per_ip)
        if ip_cap is not None and self._per_ip[ip] >= ip_cap:
            return Refusal.IP_FULL
        self._ips[session_id] = ip
        self._per_ip[ip] += 1
        return None

    async def login(self, session_id: str, user: str, maximum: int | None) -> Refusal | None:
        await self.logout(session_id)
        cap = self._part(maximum)
        if cap is not None and self._per_user[user] >= cap:
            return Refusal.USER_FULL
        self._users[session_id] = user
        self._per_user[user] += 1
        return None

    async def logout(self, session_id: str) -> None:
        user = self._users.pop(session_id, None)
        if user is not None:
            _decrement(self._per_user, user)

    async def release(self, session_id: str) -> None:
        await self.logout(session_id)
        ip = self._ips.pop(session_id, None)
        if ip is not None:
            _decrement(self._per_ip, ip)

    def sessions(self) -> int:
        """How many sessions hold a slot."""
        return len(self._ids())

    def sessions_from(self, ip: str) -> int:
        """How many sessions hold a slot in ``ip``'s count."""
        return self._per_ip.get(ip, 0)

    def holdings(self) -> list[Holding]:
        """Every session that holds a slot, with what it holds."""
        return [
            Holding(session_id, self._ips.get(session_id), self._users.get(session_id))
            for session_id in self._ids()
        ]

    def holding(self, session_id: str) -> Holding | None:
        """What one session holds, or ``None`` if nothing."""
        ip, user = self._ips.get(session_id), self._users.get(session_id)
        if ip is None and user is None:
            return None
        return Holding(session_id, ip, user)

    def _ids(self) -> list[str]:
        # dicts keep insertion order; a user-only session (logged in through a
        # fallback without being admitted there) still counts.
        return list(dict.fromkeys([*self._ips, *self._users]))


class LocalBandwidth(Bandwidth):
    """Token buckets in this process's memory; ``share`` divides every rate."""

    def __init__(self, *, share: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        _check_share(share)
        self._share = share
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    async def reserve(self, buckets: Sequence[Bucket], amount: int) -> float:
        now = self._clock()
        wait = 0.0
        for bucket in buckets:
            wait = max(wait, self._bucket(bucket, now).reserve(amount, now))
        return wait

    def _bucket(self, bucket: Bucket, now: float) -> TokenBucket:
        rate = math.ceil(bucket.rate / self._share)
        state = self._buckets.get(bucket.key)
        if state is None:
            state = self._buckets[bucket.key] = TokenBucket(rate, now)
        elif state.rate != rate:
            state.set_rate(rate, now)
        return state

    def chunk_size(self, rate: int) -> int:
        return local_chunk_size(rate)


class LocalBans(Bans):
    """Scores and bans in this process's memory, on the monotonic ``clock``.

    Alone it defends one process; as the Redis backend's fallback, the bans it
    decides while Redis is down hold on this worker only.
    """

    def __init__(
        self,
        settings: DefenderSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.settings = settings if settings is not None else DefenderSettings()
        self.policy = Policy(self.settings)
        self._clock = clock
        self._scores: dict[str, list[tuple[float, int]]] = {}
        self._until: dict[str, float] = {}
        self._history: dict[str, list[float]] = {}

    def banned(self, ip: str) -> bool:
        if not self._until:
            return False  # the common case costs one dict test
        offender = self.policy.offender(ip)
        return offender is not None and self._remaining(offender) > 0

    def _remaining(self, offender: str) -> float:
        until = self._until.get(offender)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[offender]
        return left

    async def offended(self, ip: str, offence: Offence) -> Ban | None:
        offender = self.policy.offender(ip)
        points = self.policy.score(offence)
        if not self.settings.enabled or offender is None or points <= 0:
            return None
        if self._remaining(offender) > 0:
            return None  # already banned: its sessions are being closed
        now = self._clock()
        since = now - self.settings.observation_time
        scores = [(at, p) for at, p in self._scores.get(offender, ()) if at > since]
        scores.append((now, points))
        if sum(p for _, p in scores) < self.settings.threshold:
            self._scores[offender] = scores
            return None
        return self._ban(offender, None)

    def _ban(self, offender: str, seconds: float | None) -> Ban:
        now = self._clock()
        history = [at for at in self._history.get(offender, ()) if at > now - ESCALATION_WINDOW]
        history.append(now)
        self._history[offender] = history
        self._scores.pop(offender, None)  # a ban resets the score
        if seconds is None:
            seconds = self.policy.ban_seconds(len(history))
        self._until[offender] = now + seconds
        ban = Ban(offender, seconds, len(history))
        self.on_ban(ban)
        return ban

    async def ban(self, ip: str, seconds: float | None = None) -> Ban:
        offender = self.policy.offender(ip)
        if offender is None:
            raise ValueError(f"{ip!r} is safelisted or no IP address: it cannot be banned")
        return self._ban(offender, seconds)

    async def unban(self, ip: str) -> bool:
        offender = self.policy.offender(ip)
        if offender is None:
            return False
        self._scores.pop(offender, None)
        self._history.pop(offender, None)
        return self._until.pop(offender, None) is not None

    async def bans(self) -> list[Ban]:
        found = []
        for offender in list(self._until):
            left = self._remaining(offender)
            if left > 0:
                found.append(Ban(offender, left, len(self._history.get(offender, ()))))
        return found

    def forget_scores(self) -> None:
        """Drop every score (kept bans hold until they end): Redis scores again."""
        self._scores.clear()


def grant(
    usage: Usage, limits: QuotaLimits, nbytes: int, files: int, headroom: int | None = None
) -> int | QuotaRefusal:
    """What a reservation against ``usage`` gets (``headroom``: at most this many bytes more).

    The arithmetic of ``lua/quota_reserve.lua``: files all or nothing, bytes
    up to the quota's edge.
    """
    if files > 0 and limits.files is not None and usage.files + files > limits.files:
        return QuotaRefusal.FILES
    granted = nbytes
    if limits.bytes is not None:
        granted = max(0, min(granted, limits.bytes - usage.bytes))
    if headroom is not None:
        granted = max(0, min(granted, headroom))
    return granted


class LocalQuotas(Quotas):
    """Tallies in this process's memory (the library server's, or one test's)."""

    def __init__(self) -> None:
        self._tallies: dict[str, Usage] = {}

    async def usage(self, user: str) -> Usage | None:
        return self._tallies.get(user)

    async def reserve(
        self, user: str, limits: QuotaLimits, nbytes: int, files: int = 0
    ) -> int | QuotaRefusal:
        usage = self._tallies.get(user)
        if usage is None:
            return QuotaRefusal.UNKNOWN
        granted = grant(usage, limits, nbytes, files)
        if not isinstance(granted, QuotaRefusal):
            self._tallies[user] = Usage(usage.bytes + granted, usage.files + files)
        return granted

    async def adjust(self, user: str, nbytes: int, files: int = 0) -> None:
        usage = self._tallies.get(user)
        if usage is not None:
            self._tallies[user] = Usage(max(0, usage.bytes + nbytes), max(0, usage.files + files))

    async def set_usage(self, user: str, usage: Usage, *, only_if_unknown: bool = False) -> bool:
        if only_if_unknown and user in self._tallies:
            return self._tallies[user] == usage
        self._tallies[user] = usage
        return True

    def chunk_size(self) -> int:
        return _QUOTA_CHUNK


class LocalLimits(LimitsBackend):
    """Counters and token buckets in this process's memory.

    ``share`` divides every cap and rate (rounding up), for use as one of
    ``share`` independent parts of a cluster. ``clock`` is the monotonic
    clock the buckets and bans run on; ``defender`` the ``[defender]``
    settings (default: off).
    """

    leases: LocalLeases
    bandwidth: LocalBandwidth
    bans: LocalBans
    quotas: LocalQuotas

    def __init__(
        self,
        *,
        share: int = 1,
        clock: Callable[[], float] = time.monotonic,
        defender: DefenderSettings | None = None,
    ) -> None:
        self.leases = LocalLeases(share=share)
        self.bandwidth = LocalBandwidth(share=share, clock=clock)
        self.bans = LocalBans(defender, clock=clock)
        self.quotas = LocalQuotas()

    def stats(self) -> BackendStats:
        return BackendStats(healthy=True, commands_sent=0, sessions=self.leases.sessions())


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _check_share(share: int) -> None:
    if share < 1:
        raise ValueError(f"share must be at least 1, not {share!r}")
