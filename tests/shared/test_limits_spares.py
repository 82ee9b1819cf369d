"""Spare connection slots: admission without a round trip, caps still exact.

``SparePool`` is tested on its own; the Redis backend's use of it against a
real redis-server (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ftp_cluster.shared.limits.base import ConnectionCaps, Refusal
from ftp_cluster.shared.limits.redis import RedisLimits
from ftp_cluster.shared.limits.redis.admin import cluster_counts, release_worker_leases
from ftp_cluster.shared.limits.redis.spares import Spare, SparePool
from tests.conftest import RedisServer
from tests.shared.test_limits_redis import eventually, free_slots, is_healthy, run, started

IP = "127.0.0.1"
FOREIGN = "127.0.0.2"
FAR = ConnectionCaps(server=1000, per_ip=1000)


# -- SparePool -------------------------------------------------------------------


def test_a_lone_session_asks_for_no_spares() -> None:
    pool = SparePool(most=8)
    assert pool.ask(IP, sessions_from_ip=0) == []
    assert not pool.take("s1", IP)


def test_spares_asked_for_grow_with_company_and_stop_at_most() -> None:
    pool = SparePool(most=8)
    asked = pool.ask(IP, sessions_from_ip=3)
    assert [spare.ip for spare in asked] == [IP] * 3
    assert len({spare.spare_id for spare in asked}) == 3
    # Those asked for but not answered yet count against the most.
    assert len(pool.ask(FOREIGN, sessions_from_ip=20)) == 5
    assert pool.ask(IP, sessions_from_ip=20) == []


def test_granted_spares_are_taken_and_given_back() -> None:
    pool = SparePool(most=2)
    first, second = pool.ask(IP, sessions_from_ip=2)
    pool.answered(first, granted=True)
    pool.answered(second, granted=False)
    assert pool.held() == [first]
    assert pool.take("s1", FOREIGN) is None  # spares belong to their IP
    assert pool.take("s1", IP) == first
    assert pool.held() == []  # its lease is now the session's
    assert pool.take("s2", IP) is None
    returned = pool.give_back("s1")  # a new spare, under a new id
    assert returned is not None and returned.ip == IP
    assert returned.spare_id not in (first.spare_id, second.spare_id)
    assert pool.held() == [returned]
    assert pool.give_back("s1") is None  # twice is nothing
    assert pool.take("s2", IP) == returned
    assert pool.give_back("s2", keep=False) is None  # released as usual
    assert pool.held() == [] and pool.free_count() == 0


def test_a_full_pool_lets_the_slot_go() -> None:
    pool = SparePool(most=1)
    (spare,) = pool.ask(IP, sessions_from_ip=1)
    pool.answered(spare, granted=True)
    assert pool.take("s1", IP) == spare
    (other,) = pool.ask(IP, sessions_from_ip=1)
    pool.answered(other, granted=True)
    assert pool.give_back("s1") is None  # one free already: most is 1
    assert pool.held() == [other]


def test_a_spare_redis_did_not_keep_is_forgotten() -> None:
    pool = SparePool(most=2)
    (spare,) = pool.ask(IP, sessions_from_ip=1)
    pool.answered(spare, granted=True)
    pool.take("s1", IP)
    returned = pool.give_back("s1")
    assert returned is not None
    pool.forget(returned)
    assert pool.held() == [] and pool.free_count() == 0
    assert pool.take("s2", IP) is None


def test_trim_takes_only_spares_idle_for_a_whole_interval() -> None:
    pool = SparePool(most=8)
    for spare in pool.ask(IP, sessions_from_ip=3):
        pool.answered(spare, granted=True)
    assert pool.trim() == []  # just granted: not idle yet
    assert pool.take("s1", IP) is not None  # 2 of 3 stayed free
    assert len(pool.trim()) == 2
    assert pool.give_back("s1") is not None
    assert pool.trim() == []  # given back since the last trim
    assert len(pool.trim()) == 1
    assert pool.held() == [] and pool.free_count() == 0


def test_drop_free_keeps_the_sessions_on_spares() -> None:
    pool = SparePool(most=8)
    for spare in pool.ask(IP, sessions_from_ip=2):
        pool.answered(spare, granted=True)
    assert pool.take("s1", IP) is not None
    (dropped,) = pool.drop_free()
    assert isinstance(dropped, Spare)
    assert pool.held() == []
    # s1 still stands on its spare: when it ends, its slot becomes one again.
    assert pool.give_back("s1") is not None


def test_spares_stay_within_a_sixteenth_of_each_cap() -> None:
    pool = SparePool(most=32)
    pool.fit(server_cap=8 * 16, ip_cap=None, workers=2)  # 4 each
    assert len(pool.ask(IP, sessions_from_ip=50)) == 4
    pool.fit(server_cap=None, ip_cap=3 * 16, workers=1)  # 3 per IP
    assert pool.ask(IP, sessions_from_ip=50) == []  # 4 asked already
    assert len(pool.ask(FOREIGN, sessions_from_ip=50)) == 3
    pool.fit(server_cap=15 * 16, ip_cap=None, workers=16)  # small caps stay exact
    assert not pool.enabled


def test_give_back_keeps_no_more_than_the_caps_allow() -> None:
    pool = SparePool(most=32)
    pool.fit(server_cap=None, ip_cap=32, workers=1)  # two per IP
    for spare in pool.ask(IP, sessions_from_ip=5):
        pool.answered(spare, granted=True)
    assert pool.take("s1", IP) is not None
    assert pool.take("s2", IP) is not None
    pool.fit(server_cap=None, ip_cap=16, workers=1)  # now one per IP
    assert pool.give_back("s1") is not None
    assert pool.give_back("s2") is None  # IP has its one free spare already


def test_no_spares_when_disabled() -> None:
    pool = SparePool(most=0)
    assert not pool.enabled
    assert pool.ask(IP, sessions_from_ip=5) == []


# -- the Redis backend -------------------------------------------------------------


async def churn(limits: RedisLimits, prefix: str, sessions: int, ip: str = IP) -> None:
    """Sessions one after the other while one more stays connected throughout."""
    for n in range(sessions):
        assert await limits.leases.admit(f"{prefix}{n}", ip, FAR) is None
        await limits.leases.release(f"{prefix}{n}")


async def warmed(server: RedisServer, namespace: str, worker_id: str = "w") -> RedisLimits:
    """A started backend with one session from IP ("anchor") and spares for IP."""
    limits = RedisLimits(server.url, namespace=namespace, worker_id=worker_id)
    await limits.start()
    assert await limits.leases.admit("anchor", IP, FAR) is None
    await churn(limits, "warm", 3)
    await limits.settled()
    assert cluster_counts(server.client(), namespace)["spare_slots"] >= 1
    return limits


def test_sessions_from_a_busy_address_are_admitted_without_a_call(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        limits = await warmed(redis_server, redis_namespace)
        try:
            before = limits.stats().commands_sent
            await churn(limits, "s", 50)
            assert limits.stats().commands_sent == before
            await limits.settled()
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["sessions"] == 1 and counts["ips"] == {IP: 1}
            assert counts["spare_slots"] >= 1
        finally:
            await limits.close()
        assert redis_server.client().keys(f"{redis_namespace}:*") == []

    run(main())


def test_without_spare_slots_every_capped_admission_asks_redis(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        async with started(redis_server, redis_namespace, worker_id="w", spare_slots=0) as limits:
            assert await limits.leases.admit("anchor", IP, FAR) is None
            before = limits.stats().commands_sent
            await churn(limits, "s", 10)
            assert limits.stats().commands_sent - before == 20
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["spare_slots"] == 0

    run(main())


def test_spares_are_granted_only_below_half_the_cap(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def spares_after(others: int) -> int:
        """Spares one worker holds after two sessions, with ``others`` elsewhere."""
        caps = ConnectionCaps(server=1000, per_ip=64)  # half: 32; spares: 4 at most
        other = RedisLimits(
            redis_server.url, namespace=redis_namespace, worker_id="other", spare_slots=0
        )
        limits = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="w")
        await other.start()
        await limits.start()
        try:
            for n in range(others):
                assert await other.leases.admit(f"o{n}", IP, caps) is None
            for n in range(2):  # the second has company: it asks for a spare
                assert await limits.leases.admit(f"s{n}", IP, caps) is None
            await limits.settled()
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["ips"][IP] == others + 2
            return int(counts["spare_slots"])
        finally:
            await limits.close()
            await other.close()

    async def main() -> None:
        assert await spares_after(others=10) == 1
        assert await spares_after(others=31) == 0

    run(main())


def test_a_worker_takes_its_own_spares_up_to_the_cap_exactly(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        limits = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="w")
        caps = ConnectionCaps(server=1000, per_ip=64)
        await limits.start()
        try:
            for n in range(64):
                assert await limits.leases.admit(str(n), IP, caps) is None
            assert await limits.leases.admit("over", IP, caps) is Refusal.IP_FULL
            await limits.settled()
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["ips"] == {IP: 64} and counts["spare_slots"] == 0
        finally:
            await limits.close()

    run(main())


def test_caps_hold_exactly_across_workers_holding_spares(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        workers = [
            RedisLimits(redis_server.url, namespace=redis_namespace, worker_id=f"w{n}")
            for n in range(2)
        ]
        caps = ConnectionCaps(server=40, per_ip=40)
        for limits in workers:
            await limits.start()
        try:
            for n, limits in enumerate(workers):  # warm: both hold free spares
                assert await limits.leases.admit(f"anchor{n}", IP, caps) is None
                for m in range(4):
                    assert await limits.leases.admit(f"warm{m}", IP, caps) is None
                    await limits.leases.release(f"warm{m}")
            await asyncio.gather(*(limits.settled() for limits in workers))
            assert cluster_counts(redis_server.client(), redis_namespace)["spare_slots"] >= 2

            results = await asyncio.gather(
                *(limits.leases.admit(f"s{n}", IP, caps) for n in range(40) for limits in workers)
            )
            admitted = results.count(None)
            assert set(results) <= {None, Refusal.SERVER_FULL, Refusal.IP_FULL}
            await asyncio.gather(*(limits.settled() for limits in workers))
            counts = cluster_counts(redis_server.client(), redis_namespace)
            # Never over; short of the cap by at most the other worker's free spares.
            assert counts["sessions"] == admitted + 2 <= 40
            assert counts["sessions"] + counts["spare_slots"] <= 40
            assert counts["sessions"] >= 40 - counts["spare_slots"]
        finally:
            for limits in workers:
                await limits.close()

    run(main())


def test_own_spares_never_refuse_a_session_from_another_address(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        limits = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="w")
        caps = ConnectionCaps(server=96)  # up to 96 // 16 = 6 spares
        await limits.start()
        try:
            assert await limits.leases.admit("anchor", IP, caps) is None
            await churn(limits, "warm", 3)
            assert limits.stats().sessions == 1
            await limits.settled()
            assert cluster_counts(redis_server.client(), redis_namespace)["spare_slots"] >= 1
            # 95 slots are free: spares of IP may not take any from FOREIGN.
            assert await free_slots(limits, caps) == 95
        finally:
            await limits.close()

    run(main())


def test_idle_spares_are_given_back(redis_server: RedisServer, redis_namespace: str) -> None:
    async def main() -> None:
        limits = await warmed(redis_server, redis_namespace)
        try:

            async def none_left() -> bool:
                await limits.settled()
                counts = cluster_counts(redis_server.client(), redis_namespace)
                return bool(counts["spare_slots"] == 0)

            await eventually(none_left, timeout=5)  # two checks, about a second apart
            assert cluster_counts(redis_server.client(), redis_namespace)["sessions"] == 1
        finally:
            await limits.close()

    run(main())


def test_a_dead_workers_spares_are_freed_with_its_sessions(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        limits = await warmed(redis_server, redis_namespace, worker_id="dead")
        # Abandoned, as by a killed process: only the supervisor's release is left.
        freed = await asyncio.to_thread(
            release_worker_leases, redis_server.url, redis_namespace, "dead"
        )
        assert freed == 1  # the session; its spares are not sessions
        assert redis_server.client().keys(f"{{{redis_namespace}}}:conn:*") == []
        await limits.close()

    run(main())


def test_spares_free_during_an_outage_are_gone_after_it(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    server = redis_factory()

    async def main() -> None:
        async with started(
            server, redis_namespace, worker_id="w", on_failure="open", lease_ttl=30
        ) as limits:
            assert await limits.leases.admit("anchor", IP, FAR) is None
            assert await limits.leases.admit("on-spare", IP, FAR) is None  # asks for one
            await churn(limits, "warm", 2)
            await limits.settled()
            with server.hung():
                # A capped admission times out: the outage starts.
                assert await limits.leases.admit("offline", FOREIGN, FAR) is None
                assert not limits.stats().healthy
                await limits.leases.release("on-spare")

            await eventually(is_healthy(limits), timeout=5)
            await limits.settled()
            counts = cluster_counts(server.client(), redis_namespace)
            assert counts["spare_slots"] == 0
            assert counts["sessions"] == 2  # anchor and offline
            assert counts["ips"] == {IP: 1, FOREIGN: 1}

    run(main())


def test_concurrent_churn_on_spares_keeps_redis_exact(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    """Sessions leave slots as spares that others take in the same batch."""

    async def main() -> None:
        limits = await warmed(redis_server, redis_namespace)
        try:
            await asyncio.gather(*(churn(limits, f"c{n}-", 30) for n in range(16)))
            held = [f"h{n}" for n in range(10)]
            for session_id in held:
                assert await limits.leases.admit(session_id, IP, FAR) is None
                assert await limits.leases.login(session_id, "alice", None) is None
            await limits.settled()
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["sessions"] == 11 and counts["ips"] == {IP: 11}
            assert counts["users"] == {"alice": 10}
            assert counts["spare_slots"] == len(limits.leases._spares.held())
            for session_id in held:
                await limits.leases.release(session_id)
            await limits.settled()
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["sessions"] == 1 and counts["users"] == {}
        finally:
            await limits.close()
        assert redis_server.client().keys(f"{redis_namespace}:*") == []

    run(main())
