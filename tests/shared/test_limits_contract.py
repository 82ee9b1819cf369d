"""The LimitsBackend contract, run against every backend.

The same tests run on the in-process backend and on Redis (one worker), so
the two cannot drift apart: what a session sees must not depend on the
deployment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ftp_cluster.shared.limits.base import Bucket, ConnectionCaps, LimitsBackend, Refusal
from ftp_cluster.shared.limits.bucket import EFFECTIVE_BURST_SECONDS
from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.shared.limits.redis import RedisLimits

Factory = Callable[[], LimitsBackend]
Body = Callable[[LimitsBackend], Awaitable[None]]

IP = "127.0.0.1"
FOREIGN = "127.0.0.2"
RATE = 1_000_000
# Timing margin for waits computed by the backend (no sleeping involved).
MARGIN = 0.05


@pytest.fixture(params=["local", "redis"])
def make_limits(request: pytest.FixtureRequest, redis_namespace: str) -> Factory:
    if request.param == "local":
        return LocalLimits
    url = request.getfixturevalue("redis_server").url
    return lambda: RedisLimits(url, namespace=redis_namespace, worker_id="worker-1")


def run(make: Factory, body: Body) -> None:
    async def main() -> None:
        limits = make()
        await limits.start()
        try:
            await body(limits)
            # Every answer above must have come from the backend itself, not
            # from a fallback standing in for an unreachable Redis.
            assert limits.stats().healthy
        finally:
            await limits.close()

    asyncio.run(main())


def test_admits_up_to_the_server_cap(make_limits: Factory) -> None:
    caps = ConnectionCaps(server=3)

    async def body(limits: LimitsBackend) -> None:
        for n in range(3):
            assert await limits.leases.admit(f"s{n}", f"10.0.0.{n}", caps) is None
        assert await limits.leases.admit("s3", "10.0.0.9", caps) is Refusal.SERVER_FULL
        assert limits.stats().sessions == 3
        await limits.leases.release("s1")
        assert await limits.leases.admit("s4", "10.0.0.9", caps) is None
        assert await limits.leases.admit("s5", "10.0.0.9", caps) is Refusal.SERVER_FULL

    run(make_limits, body)


def test_per_ip_cap(make_limits: Factory) -> None:
    caps = ConnectionCaps(server=10, per_ip=2)

    async def body(limits: LimitsBackend) -> None:
        assert await limits.leases.admit("a", IP, caps) is None
        assert await limits.leases.admit("b", IP, caps) is None
        assert await limits.leases.admit("c", IP, caps) is Refusal.IP_FULL
        assert await limits.leases.admit("d", FOREIGN, caps) is None
        await limits.leases.release("a")
        assert await limits.leases.admit("e", IP, caps) is None

    run(make_limits, body)


def test_server_cap_is_checked_before_ip_cap(make_limits: Factory) -> None:
    caps = ConnectionCaps(server=1, per_ip=1)

    async def body(limits: LimitsBackend) -> None:
        assert await limits.leases.admit("a", IP, caps) is None
        assert await limits.leases.admit("b", IP, caps) is Refusal.SERVER_FULL

    run(make_limits, body)


def test_no_caps_admit_everyone(make_limits: Factory) -> None:
    async def body(limits: LimitsBackend) -> None:
        for n in range(50):
            assert await limits.leases.admit(str(n), IP, ConnectionCaps()) is None
        assert limits.stats().sessions == 50

    run(make_limits, body)


def test_refused_session_holds_nothing(make_limits: Factory) -> None:
    caps = ConnectionCaps(server=1)

    async def body(limits: LimitsBackend) -> None:
        assert await limits.leases.admit("a", IP, caps) is None
        assert await limits.leases.admit("b", IP, caps) is Refusal.SERVER_FULL
        assert limits.stats().sessions == 1
        await limits.leases.release("b")  # a refused session's release changes nothing
        assert await limits.leases.admit("c", IP, caps) is Refusal.SERVER_FULL

    run(make_limits, body)


def test_user_cap(make_limits: Factory) -> None:
    async def body(limits: LimitsBackend) -> None:
        for n in range(4):
            assert await limits.leases.admit(f"s{n}", IP, ConnectionCaps()) is None
        assert await limits.leases.login("s0", "alice", 2) is None
        assert await limits.leases.login("s1", "alice", 2) is None
        assert await limits.leases.login("s2", "alice", 2) is Refusal.USER_FULL
        assert await limits.leases.login("s2", "bob", 2) is None
        # No maximum: counted, never refused.
        assert await limits.leases.login("s3", "alice", None) is None

    run(make_limits, body)


def test_relogin_gives_up_the_previous_user_slot(make_limits: Factory) -> None:
    async def body(limits: LimitsBackend) -> None:
        for name in ("s1", "s2"):
            assert await limits.leases.admit(name, IP, ConnectionCaps()) is None
        assert await limits.leases.login("s1", "alice", 1) is None
        # The same user again does not count the session twice.
        assert await limits.leases.login("s1", "alice", 1) is None
        assert await limits.leases.login("s1", "bob", 1) is None
        assert await limits.leases.login("s2", "alice", 1) is None
        assert await limits.leases.login("s2", "bob", 1) is Refusal.USER_FULL
        # The refused relogin also gave up s2's "alice" slot.
        assert await limits.leases.login("s1", "alice", 1) is None

    run(make_limits, body)


def test_logout_frees_the_user_slot_only(make_limits: Factory) -> None:
    caps = ConnectionCaps(server=2)

    async def body(limits: LimitsBackend) -> None:
        assert await limits.leases.admit("s1", IP, caps) is None
        assert await limits.leases.admit("s2", IP, caps) is None
        assert await limits.leases.login("s1", "alice", 1) is None
        await limits.leases.logout("s1")
        await limits.leases.logout("s1")  # twice is harmless
        assert await limits.leases.login("s2", "alice", 1) is None
        assert await limits.leases.admit("s3", IP, caps) is Refusal.SERVER_FULL
        assert limits.stats().sessions == 2

    run(make_limits, body)


def test_release_frees_every_slot(make_limits: Factory) -> None:
    caps = ConnectionCaps(server=1, per_ip=1)

    async def body(limits: LimitsBackend) -> None:
        assert await limits.leases.admit("s1", IP, caps) is None
        assert await limits.leases.login("s1", "alice", 1) is None
        await limits.leases.release("s1")
        assert limits.stats().sessions == 0
        assert await limits.leases.admit("s2", IP, caps) is None
        assert await limits.leases.login("s2", "alice", 1) is None

    run(make_limits, body)


def test_unknown_ids_are_ignored(make_limits: Factory) -> None:
    caps = ConnectionCaps(server=1)

    async def body(limits: LimitsBackend) -> None:
        await limits.leases.release("never-admitted")
        await limits.leases.logout("never-admitted")
        assert await limits.leases.admit("s1", IP, caps) is None
        await limits.leases.release("s1")
        await limits.leases.release("s1")
        assert await limits.leases.admit("s2", IP, caps) is None
        assert await limits.leases.admit("s3", IP, caps) is Refusal.SERVER_FULL

    run(make_limits, body)


def test_fresh_bucket_has_no_credit(make_limits: Factory) -> None:
    async def body(limits: LimitsBackend) -> None:
        wait = await limits.bandwidth.reserve([Bucket("server:write", RATE)], 2 * RATE)
        assert wait == pytest.approx(2.0, abs=MARGIN)
        # Debt adds up: the next reservation waits behind the first.
        wait = await limits.bandwidth.reserve([Bucket("server:write", RATE)], RATE)
        assert wait == pytest.approx(3.0, abs=MARGIN)

    run(make_limits, body)


def test_idle_credit_is_capped_at_the_burst(make_limits: Factory) -> None:
    bucket = Bucket("server:read", RATE)

    async def body(limits: LimitsBackend) -> None:
        assert await limits.bandwidth.reserve([bucket], 1) == pytest.approx(0.0, abs=MARGIN)
        # Idle for longer than the burst: the credit stops growing at the burst.
        await asyncio.sleep(EFFECTIVE_BURST_SECONDS + 0.2)
        wait = await limits.bandwidth.reserve([bucket], RATE)
        assert wait == pytest.approx(1.0 - EFFECTIVE_BURST_SECONDS, abs=MARGIN)

    run(make_limits, body)


def test_several_buckets_wait_for_the_slowest(make_limits: Factory) -> None:
    slow = Bucket("server:write", RATE)
    fast = Bucket("user:alice:write", 4 * RATE)

    async def body(limits: LimitsBackend) -> None:
        wait = await limits.bandwidth.reserve([fast, slow], RATE)
        assert wait == pytest.approx(1.0, abs=MARGIN)
        # Both were charged: the fast one alone now owes a quarter second.
        wait = await limits.bandwidth.reserve([fast], 0)
        assert wait == pytest.approx(0.25, abs=MARGIN)
        assert await limits.bandwidth.reserve([], RATE) == 0.0

    run(make_limits, body)


def test_buckets_are_independent(make_limits: Factory) -> None:
    async def body(limits: LimitsBackend) -> None:
        await limits.bandwidth.reserve([Bucket("user:alice:read", RATE)], 5 * RATE)
        wait = await limits.bandwidth.reserve([Bucket("user:bob:read", RATE)], RATE // 2)
        assert wait == pytest.approx(0.5, abs=MARGIN)

    run(make_limits, body)


def test_rate_change_applies_to_the_existing_bucket(make_limits: Factory) -> None:
    async def body(limits: LimitsBackend) -> None:
        assert await limits.bandwidth.reserve([Bucket("server:read", RATE)], RATE) == pytest.approx(
            1.0, abs=MARGIN
        )
        # The debt is kept and now paid off at the doubled rate.
        wait = await limits.bandwidth.reserve([Bucket("server:read", 2 * RATE)], 0)
        assert wait == pytest.approx(0.5, abs=MARGIN)

    run(make_limits, body)


def test_chunk_size_is_positive_and_grows_with_rate(make_limits: Factory) -> None:
    limits = make_limits()
    sizes = [limits.bandwidth.chunk_size(rate) for rate in (1, 1024, RATE, 1000 * RATE)]
    assert all(size > 0 for size in sizes)
    assert sizes == sorted(sizes)
