"""Pacing one transfer against every bandwidth limit that applies to it.

Four levels apply (as in aioftp): the server's aggregate and per-connection
rates, and the user's aggregate and per-connection rates. Aggregates are
shared buckets in the limits backend (cluster-wide with Redis); per-connection
rates are local buckets owned by the session. A transfer reserves a chunk at
a time from all of them and waits for the slowest, so a backend round trip is
paid per chunk, never per packet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ftp_cluster.shared.limits.base import Bucket, LimitsBackend
from ftp_cluster.shared.limits.bucket import TokenBucket
from ftp_cluster.shared.limits.local import local_chunk_size
from ftp_cluster.shared.settings import ServerSettings
from ftp_cluster.shared.users import User

__all__ = ["ConnectionBuckets", "Throttle", "throttle_for"]

#: Chunk when nothing limits the transfer (one sendfile call may move this much).
UNLIMITED_CHUNK = 1 << 30


@dataclass(slots=True)
class ConnectionBuckets:
    """A session's per-connection buckets, made on first use and kept for its life."""

    upload: TokenBucket | None = None
    download: TokenBucket | None = None

    def get(self, upload: bool, rate: int) -> TokenBucket:
        bucket = self.upload if upload else self.download
        if bucket is None or bucket.rate != rate:
            bucket = TokenBucket(rate)
            if upload:
                self.upload = bucket
            else:
                self.download = bucket
        return bucket


@dataclass(slots=True)
class Throttle:
    """Paces one transfer; ``chunk`` is how many bytes to move per :meth:`pace`."""

    limits: LimitsBackend
    shared: Sequence[Bucket]
    local: Sequence[TokenBucket]
    chunk: int

    @property
    def unlimited(self) -> bool:
        return not self.shared and not self.local

    async def pace(self, amount: int) -> None:
        """Account ``amount`` bytes and sleep until they may move."""
        wait = 0.0
        now = time.monotonic()
        for bucket in self.local:
            wait = max(wait, bucket.reserve(amount, now))
        if self.shared:
            wait = max(wait, await self.limits.bandwidth.reserve(self.shared, amount))
        if wait > 0:
            await asyncio.sleep(wait)


def _rate(*candidates: int | None) -> list[int]:
    return [rate for rate in candidates if rate]


def throttle_for(
    limits: LimitsBackend,
    settings: ServerSettings,
    user: User,
    buckets: ConnectionBuckets,
    *,
    upload: bool,
) -> Throttle:
    """The throttle for one transfer in one direction.

    The settings keep aioftp's names: "read" is what the server reads
    (uploads), "write" what it writes (downloads).
    """
    direction = "upload" if upload else "download"
    shared: list[Bucket] = []
    server_rate = settings.read_speed_limit if upload else settings.write_speed_limit
    if server_rate:
        shared.append(Bucket(f"server:{direction}", server_rate))
    user_rate = user.read_speed_limit if upload else user.write_speed_limit
    if user_rate:
        shared.append(Bucket(f"user:{user.key}:{direction}", user_rate))
    per_connection = _rate(
        settings.read_speed_limit_per_connection
        if upload
        else settings.write_speed_limit_per_connection,
        user.read_speed_limit_per_connection if upload else user.write_speed_limit_per_connection,
    )
    # Two per-connection limits on one session: only the lower one can bind.
    local = [buckets.get(upload, min(per_connection))] if per_connection else []
    chunks = [limits.bandwidth.chunk_size(bucket.rate) for bucket in shared]
    chunks += [local_chunk_size(bucket.rate) for bucket in local]
    return Throttle(limits, shared, local, min(chunks, default=UNLIMITED_CHUNK))
