"""Lease changes are coalesced into few Redis calls and stay exact.

``Batcher`` is tested on its own with plain coroutines; the Redis backend's
use of it against a real redis-server (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from ftp_cluster.shared.limits.base import ConnectionCaps, Refusal
from ftp_cluster.shared.limits.redis import RedisLimits
from ftp_cluster.shared.limits.redis.admin import cluster_counts
from ftp_cluster.shared.limits.redis.batching import Batcher
from tests.conftest import RedisServer

IP = "127.0.0.1"
FOREIGN = "127.0.0.2"


def run(coroutine: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout))


# -- Batcher ---------------------------------------------------------------------


class Recorder:
    """A ``send`` that doubles numbers and remembers the batches it got."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.running = 0
        self.most_running = 0

    async def send(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0.001)
            if self.fail_on in items:
                raise OSError(f"batch with {self.fail_on} failed")
            return [2 * item for item in items]
        finally:
            self.running -= 1


def test_one_tick_of_submissions_is_one_batch_in_order() -> None:
    async def main() -> None:
        recorder = Recorder()
        batcher: Batcher[int, int] = Batcher(recorder.send)
        results = await asyncio.gather(*(batcher.submit(n) for n in range(50)))
        assert results == [2 * n for n in range(50)]
        assert recorder.batches == [list(range(50))]

    run(main())


def test_submissions_during_a_batch_wait_for_the_next_one() -> None:
    async def main() -> None:
        recorder = Recorder()
        batcher: Batcher[int, int] = Batcher(recorder.send, max_batch=16)
        first = asyncio.gather(*(batcher.submit(n) for n in range(40)))
        await asyncio.sleep(0)  # the first batch is on its way
        second = asyncio.gather(*(batcher.submit(n) for n in range(40, 45)))
        assert await first == [2 * n for n in range(40)]
        assert await second == [2 * n for n in range(40, 45)]
        # Capped at 16, one at a time, in submission order; the late five join
        # the items still queued when the first batch returns.
        assert [len(batch) for batch in recorder.batches] == [16, 16, 13]
        assert [n for batch in recorder.batches for n in batch] == list(range(45))
        assert recorder.most_running == 1

    run(main())


def test_a_failed_batch_fails_its_callers_only() -> None:
    async def main() -> None:
        recorder = Recorder(fail_on=3)
        batcher: Batcher[int, int] = Batcher(recorder.send)
        doomed = [asyncio.ensure_future(batcher.submit(n)) for n in range(5)]
        await asyncio.wait(doomed)
        assert all(isinstance(task.exception(), OSError) for task in doomed)
        assert await batcher.submit(7) == 14

    run(main())


def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    async def main() -> None:
        recorder = Recorder()
        batcher: Batcher[int, int] = Batcher(recorder.send)
        tasks = [asyncio.ensure_future(batcher.submit(n)) for n in range(3)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        await asyncio.wait(tasks)
        assert tasks[1].cancelled()
        assert [tasks[0].result(), tasks[2].result()] == [0, 4]

    run(main())


def test_unurgent_items_linger_for_company() -> None:
    async def main() -> None:
        recorder = Recorder()
        batcher: Batcher[int, int] = Batcher(recorder.send, linger=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = [batcher.push(n, urgent=False) for n in range(3)]
        await asyncio.sleep(0.05)
        assert recorder.batches == []  # still lingering
        later = [batcher.push(n, urgent=False) for n in range(3, 5)]
        assert await asyncio.gather(*first, *later) == [0, 2, 4, 6, 8]
        assert recorder.batches == [[0, 1, 2, 3, 4]]
        assert loop.time() - started >= 0.19

    run(main())


def test_an_urgent_item_takes_the_lingering_ones_along_at_once() -> None:
    async def main() -> None:
        recorder = Recorder()
        batcher: Batcher[int, int] = Batcher(recorder.send, linger=30)
        lingering = batcher.push(1, urgent=False)
        assert await asyncio.wait_for(batcher.submit(2), 5) == 4
        assert lingering.result() == 2
        assert recorder.batches == [[1, 2]]
        # Unurgent items linger again once the urgent one has gone.
        lingering = batcher.push(3, urgent=False)
        await asyncio.sleep(0.05)
        assert not lingering.done()
        assert await asyncio.wait_for(batcher.submit(4), 5) == 8
        assert recorder.batches == [[1, 2], [3, 4]]

    run(main())


def test_full_batches_of_unurgent_items_go_without_lingering() -> None:
    # Lingering after every batch would cap the rate at max_batch per linger:
    # a worker pushing faster than that would build a backlog without end.
    async def main() -> None:
        recorder = Recorder()
        batcher: Batcher[int, int] = Batcher(recorder.send, max_batch=4, linger=30)
        futures = [batcher.push(n, urgent=False) for n in range(9)]
        await asyncio.wait_for(asyncio.gather(*futures[:8]), 5)
        assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
        await asyncio.sleep(0.05)
        assert not futures[8].done()  # a part batch lingers as before

    run(main())


def test_posted_items_report_once_per_batch() -> None:
    async def main() -> None:
        recorder = Recorder()
        reports: list[tuple[list[int], object]] = []
        batcher: Batcher[int, int] = Batcher(
            recorder.send, linger=0.01, on_posted=lambda items, out: reports.append((items, out))
        )
        batcher.post(1)
        batcher.post(2)
        assert await asyncio.wait_for(batcher.submit(3), 5) == 6
        assert recorder.batches == [[1, 2, 3]]
        assert reports == [([1, 2], [2, 4])]  # the awaited one is not reported
        batcher.post(4)
        await asyncio.sleep(0.1)  # lingered, then sent alone
        assert reports[1:] == [([4], [8])]

    run(main())


def test_posted_items_hear_of_a_failed_batch() -> None:
    async def main() -> None:
        recorder = Recorder(fail_on=2)
        reports: list[tuple[list[int], object]] = []
        batcher: Batcher[int, int] = Batcher(
            recorder.send, on_posted=lambda items, out: reports.append((items, out))
        )
        batcher.post(1)
        batcher.post(2)
        failed = batcher.push(3)
        await asyncio.wait([failed], timeout=5)
        assert isinstance(failed.exception(), OSError)
        ((items, outcome),) = reports
        assert items == [1, 2] and isinstance(outcome, OSError)

    run(main())


def test_post_needs_a_report_handler() -> None:
    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(Recorder().send)
        with pytest.raises(RuntimeError):
            batcher.post(1)

    run(main())


# -- the Redis backend -------------------------------------------------------------


def test_concurrent_admissions_share_few_round_trips(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        limits = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="w")
        await limits.start()
        try:
            before = limits.stats().commands_sent
            caps = ConnectionCaps(server=1000, per_ip=1000)
            results = await asyncio.gather(
                *(limits.leases.admit(f"s{n}", IP, caps) for n in range(50))
            )
            assert results == [None] * 50
            assert limits.stats().commands_sent - before <= 3
            before = limits.stats().commands_sent
            await asyncio.gather(*(limits.leases.login(f"s{n}", "alice", None) for n in range(50)))
            await asyncio.gather(*(limits.leases.release(f"s{n}") for n in range(50)))
            assert limits.stats().commands_sent - before <= 6
            assert limits.stats().sessions == 0
        finally:
            await limits.close()
        assert redis_server.client().keys(f"{redis_namespace}:*") == []

    run(main())


def test_concurrent_admissions_respect_caps_exactly(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        workers = [
            RedisLimits(redis_server.url, namespace=redis_namespace, worker_id=f"w{n}")
            for n in range(2)
        ]
        for limits in workers:
            await limits.start()
        try:
            caps = ConnectionCaps(server=37, per_ip=30)
            sessions = [(limits, f"s{n}") for limits in workers for n in range(50)]
            results = await asyncio.gather(
                *(
                    limits.leases.admit(session, IP if index % 2 else FOREIGN, caps)
                    for index, (limits, session) in enumerate(sessions)
                )
            )
            admitted = results.count(None)
            assert admitted == 37
            assert set(results) <= {None, Refusal.SERVER_FULL, Refusal.IP_FULL}
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["sessions"] == 37
            assert all(count <= 30 for count in counts["ips"].values())
            assert sum(limits.stats().sessions for limits in workers) == 37

            # Each session logs in as one of two users capped at 10: exactly 20 get in.
            held = [pair for pair, result in zip(sessions, results, strict=True) if result is None]
            logins = await asyncio.gather(
                *(
                    limits.leases.login(session, f"user{index % 2}", 10)
                    for index, (limits, session) in enumerate(held)
                )
            )
            assert logins.count(None) == 20
            assert set(logins) <= {None, Refusal.USER_FULL}
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["users"] == {"user0": 10, "user1": 10}

            await asyncio.gather(*(limits.leases.release(session) for limits, session in held))
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts == {
                "sessions": 0,
                "workers": 0,
                "ips": {},
                "users": {},
                "spare_slots": 0,
            }
        finally:
            for limits in workers:
                await limits.close()

    run(main())


def test_refreshes_during_batched_changes_lose_nothing(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    # lease_ttl 0.3 s: the background task refreshes every 0.1 s while
    # batches of changes go out; the end state must be exactly what is held.
    async def session(limits: RedisLimits, n: int, rounds: int) -> None:
        for round_ in range(rounds):
            session_id = f"s{n}-{round_}"
            assert await limits.leases.admit(session_id, IP, ConnectionCaps()) is None
            assert await limits.leases.login(session_id, f"user{n % 3}", None) is None
            if round_ < rounds - 1:
                await limits.leases.release(session_id)
            await asyncio.sleep(0.002)

    async def main() -> None:
        limits = RedisLimits(
            redis_server.url, namespace=redis_namespace, worker_id="w", lease_ttl=0.3
        )
        await limits.start()
        try:
            await asyncio.gather(*(session(limits, n, 60) for n in range(30)))
            await asyncio.sleep(0.35)  # past a lease TTL: only refreshed leases live
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["sessions"] == 30
            assert counts["users"] == {"user0": 10, "user1": 10, "user2": 10}
            assert limits.stats().healthy
        finally:
            await limits.close()

    run(main())


def test_index_matches_the_leases_after_batches(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    ttl = 30.0

    async def main() -> None:
        limits = RedisLimits(
            redis_server.url, namespace=redis_namespace, worker_id="w", lease_ttl=ttl
        )
        await limits.start()
        try:
            await asyncio.gather(
                *(limits.leases.admit(f"s{n}", IP, ConnectionCaps()) for n in range(6))
            )
            await asyncio.gather(
                limits.leases.login("s0", "alice", None),
                limits.leases.login("s1", "bob", None),
                limits.leases.release("s2"),
            )
            await asyncio.gather(limits.leases.login("s0", "bob", None), limits.leases.logout("s1"))
            await limits.settled()
            index = redis_server.client().hgetall(f"{{{redis_namespace}}}:worker:w")
            assert index == {
                **{f"c:s{n}".encode(): IP.encode() for n in (0, 1, 3, 4, 5)},
                b"u:s0": b"bob",
            }
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["users"] == {"bob": 1}
            assert counts["sessions"] == 5
            pttl = redis_server.client().pttl(f"{{{redis_namespace}}}:conn:user:bob")
            assert 0 < pttl <= ttl * 1000
        finally:
            await limits.close()

    run(main())
