"""Quotas while Redis is unreachable: the last known tally, a share of its room, nothing lost.

The contract of every back end is in ``test_limits_contract.py``; these are
the outage rules of :class:`~ftp_cluster.shared.limits.redis.quotas.RedisQuotas`,
on a real redis-server that is frozen (SIGSTOP: it answers nothing and keeps
its data) and thawed again.
"""

from __future__ import annotations

from collections.abc import Callable

from ftp_cluster.shared.limits.base import QuotaLimits, QuotaRefusal, Usage
from ftp_cluster.shared.limits.redis.schema import Keys
from tests.conftest import RedisServer
from tests.shared.test_limits_redis import eventually, is_healthy, run, started

QUOTA = QuotaLimits(bytes=1000, files=10)
RECOVERY_TIMEOUT = 10.0


def _tally(server: RedisServer, namespace: str, user: str) -> dict[bytes, bytes]:
    client = server.client()
    try:
        return client.hgetall(Keys(namespace).quota(user))  # type: ignore[return-value]
    finally:
        client.close()


def test_outage_enforces_a_share_of_the_last_known_room_and_loses_nothing(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    server = redis_factory()

    async def body() -> None:
        async with started(
            server,
            redis_namespace,
            worker_id="w1",
            workers=2,
            socket_timeout=0.3,
            probe_interval=0.1,
        ) as limits:
            quotas = limits.quotas
            assert await quotas.set_usage("alice", Usage(0, 0))
            assert await quotas.reserve("alice", QUOTA, 100, files=1) == 100
            with server.hung():
                # A read finds Redis gone (a script sent now might still run later).
                assert await quotas.usage("alice") == Usage(100, 1)
                assert not limits.stats().healthy
                # Two workers: this one may fill half of the 900 bytes left.
                assert await quotas.reserve("alice", QUOTA, 1000, files=1) == 450
                assert await quotas.reserve("alice", QUOTA, 1) == 0
                # What it frees itself it may use again.
                await quotas.adjust("alice", -50, -1)
                assert await quotas.reserve("alice", QUOTA, 80) == 50
                assert await quotas.usage("alice") == Usage(550, 1)
                # A tally this worker never saw cannot be enforced: 452.
                assert await quotas.reserve("bob", QUOTA, 1) is QuotaRefusal.UNAVAILABLE
                assert await quotas.usage("bob") is None
            await eventually(is_healthy(limits), RECOVERY_TIMEOUT)
            # Every change made meanwhile reached Redis.
            assert _tally(server, redis_namespace, "alice") == {b"bytes": b"550", b"files": b"1"}
            assert await quotas.reserve("alice", QUOTA, 1000) == 450

    run(body())


def test_a_scan_during_an_outage_fills_only_a_missing_tally(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    server = redis_factory()

    async def body() -> None:
        async with started(
            server, redis_namespace, worker_id="w1", socket_timeout=0.3, probe_interval=0.1
        ) as limits:
            quotas = limits.quotas
            assert await quotas.set_usage("alice", Usage(300, 3))
            with server.hung():
                assert await quotas.usage("carol") is None  # finds Redis gone
                assert not limits.stats().healthy
                assert await quotas.set_usage("carol", Usage(20, 2), only_if_unknown=True)
                assert await quotas.reserve("carol", QUOTA, 5, files=1) == 5
                assert await quotas.set_usage("alice", Usage(1, 1), only_if_unknown=True) is False
            await eventually(is_healthy(limits), RECOVERY_TIMEOUT)
            assert _tally(server, redis_namespace, "carol") == {b"bytes": b"25", b"files": b"3"}
            assert _tally(server, redis_namespace, "alice") == {b"bytes": b"300", b"files": b"3"}

    run(body())
