"""Cluster-wide limits in Redis, shared by every worker of every host.

:class:`RedisLimits` puts the parts together; each module does one job:

* :mod:`.leases`: connection counts (batched lease changes, spare slots,
  the in-process mirror, resync);
* :mod:`.bandwidth`: token buckets;
* :mod:`.bans`: the brute-force defender (scores, bans, the ban channel);
* :mod:`.quotas`: users' disk tallies;
* :mod:`.health`: the one guard that turns a Redis failure into outage mode,
  the probing while Redis is down, and the resyncs;
* :mod:`.store`: the client, the lease channel and the script calls the
  parts share.

While Redis is unreachable nothing crashes or hangs: a
:class:`~ftp_cluster.shared.limits.local.LocalLimits` built with
``share=workers`` (its leases the mirror of this worker's sessions at all
times) stands in, as ``on_failure`` says. Key names and scripts are in
:mod:`.schema`; what the supervisor does to the shared state from outside a
worker is in :mod:`.admin`. Requires Redis 5 or later (scripts read
``TIME`` before writing).
"""

from __future__ import annotations

from typing import Literal

from ftp_cluster.shared.limits.base import BackendStats, LimitsBackend
from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.shared.limits.redis.bandwidth import RedisBandwidth
from ftp_cluster.shared.limits.redis.bans import RedisBans
from ftp_cluster.shared.limits.redis.health import PROBE_INTERVAL, Health
from ftp_cluster.shared.limits.redis.leases import RedisLeases
from ftp_cluster.shared.limits.redis.quotas import RedisQuotas
from ftp_cluster.shared.limits.redis.schema import Keys
from ftp_cluster.shared.limits.redis.store import RedisStore
from ftp_cluster.shared.settings import DefenderSettings, RedisSettings

__all__ = ["SOCKET_TIMEOUT", "RedisLimits"]

#: Seconds any one Redis socket operation may take before Redis counts as down.
SOCKET_TIMEOUT = 0.5


class RedisLimits(LimitsBackend):
    """Limits shared through Redis by ``workers`` processes (on any number of hosts).

    ``worker_id`` must be unique among everything using ``namespace`` on this
    Redis and stable for the life of the process; the supervisor passes the
    same id to :func:`.admin.release_worker_leases` when the process dies. An
    instance belongs to the event loop it is first used on.
    """

    leases: RedisLeases
    bandwidth: RedisBandwidth
    bans: RedisBans
    quotas: RedisQuotas

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
        defender: DefenderSettings | None = None,
    ) -> None:
        if on_failure not in ("closed", "open"):
            raise ValueError(f"on_failure must be 'closed' or 'open', not {on_failure!r}")
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl!r}")
        keys = Keys(namespace, worker_id)
        local = LocalLimits(share=workers, defender=defender)
        self._store = RedisStore(url, timeout=socket_timeout, home_key=keys.server)
        self._health = Health(
            self._store,
            on_failure=on_failure,
            resync_interval=lease_ttl / 3,
            probe_interval=probe_interval,
            name=f"redis-limits-{worker_id}",
        )
        # Redis that forgot the scripts restarted or failed over: its leases
        # are probably gone too, so re-register them now.
        self._store.on_forgotten = self._health.resync_soon
        self.leases = RedisLeases(
            self._store,
            self._health,
            keys,
            local.leases,
            worker_id=worker_id,
            workers=workers,
            lease_ttl=lease_ttl,
            spare_slots=spare_slots,
        )
        self.bandwidth = RedisBandwidth(self._store, self._health, keys, local.bandwidth)
        self.bans = RedisBans(self._store, self._health, keys, local.bans)
        self._health.watch(self.leases)
        self.quotas = RedisQuotas(self._store, self._health, keys, workers=workers)
        self._health.watch(self.quotas)

    async def start(self) -> None:
        if self._health.started:
            return
        with self._health.guard:
            await self._store.load_scripts()
        self._health.start()
        if self.bans.settings.enabled:
            self.bans.start()

    async def settled(self) -> None:
        """Wait until every change sent without waiting has run in Redis (or failed)."""
        await self.leases.settled()

    async def close(self) -> None:
        await self.leases.settled()
        await self._health.stop()
        await self.bans.close()
        await self.leases.close()
        await self._store.close()

    def stats(self) -> BackendStats:
        return BackendStats(
            healthy=self._health.healthy,
            commands_sent=self._store.commands,
            sessions=self.leases.sessions(),
        )
