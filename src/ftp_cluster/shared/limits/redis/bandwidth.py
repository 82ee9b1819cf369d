"""Bandwidth buckets in Redis, shared by every worker of every host.

Each bucket is a hash (level, updated) that ``lua/reserve.lua`` updates
for all the buckets of one :meth:`~RedisBandwidth.reserve` at once, with the
Redis clock deciding refills: the arithmetic of
:class:`~ftp_cluster.shared.limits.bucket.TokenBucket`, which the contract
tests hold the two to. A reservation covers a chunk of at least 128 KiB, so
a transfer sends a handful of commands per MiB.

While Redis is down (:mod:`.health`), a local
:class:`~ftp_cluster.shared.limits.local.LocalBandwidth` built with
``share=workers`` paces this worker's transfers at its share of each rate,
in either ``on_failure`` mode. Buckets keep no state worth restoring (a
bucket in Redis outlives its debt by a minute, then restarts empty), so
nothing is resynced after an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ftp_cluster.shared.limits.base import Bandwidth, Bucket
from ftp_cluster.shared.limits.bucket import EFFECTIVE_BURST_SECONDS
from ftp_cluster.shared.limits.local import LocalBandwidth
from ftp_cluster.shared.limits.redis.health import Health
from ftp_cluster.shared.limits.redis.schema import RESERVE, Keys
from ftp_cluster.shared.limits.redis.store import RedisStore

__all__ = ["RedisBandwidth"]

_CHUNK_SECONDS = 0.05
_MIN_CHUNK = 128 * 1024


class RedisBandwidth(Bandwidth):
    """Token buckets under ``keys``' namespace; ``local`` stands in while Redis is down."""

    def __init__(
        self, store: RedisStore, health: Health, keys: Keys, local: LocalBandwidth
    ) -> None:
        self._store = store
        self._health = health
        self._guard = health.guard
        self._keys = keys
        self._local = local

    async def reserve(self, buckets: Sequence[Bucket], amount: int) -> float:
        if not buckets:
            return 0.0
        if self._health.healthy:
            keys = [self._keys.bucket(bucket.key) for bucket in buckets]
            with self._guard:
                if self._store.cluster and len(buckets) > 1:
                    return await self._reserve_apart(keys, buckets, amount)
                args = [amount, EFFECTIVE_BURST_SECONDS, *(bucket.rate for bucket in buckets)]
                wait_us = await self._store.eval(RESERVE, keys, args)
                return int(wait_us) / 1_000_000
        return await self._local.reserve(buckets, amount)

    async def _reserve_apart(
        self, keys: list[str], buckets: Sequence[Bucket], amount: int
    ) -> float:
        """One call per bucket, all at once (a cluster: each bucket has a slot of its own).

        The same answer as one call for all: each bucket's arithmetic is its
        own, and the wait is the longest.
        """
        waits = await asyncio.gather(
            *(
                self._store.eval(RESERVE, [key], [amount, EFFECTIVE_BURST_SECONDS, bucket.rate])
                for key, bucket in zip(keys, buckets, strict=True)
            )
        )
        return max(int(wait) for wait in waits) / 1_000_000

    def chunk_size(self, rate: int) -> int:
        """At least 128 KiB (at most 8 round trips per MiB), else ~50 ms of ``rate``."""
        return max(_MIN_CHUNK, int(rate * _CHUNK_SECONDS))
