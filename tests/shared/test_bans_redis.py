"""What only the Redis defender does: bans shared at once, outages, the admin side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from ftp_cluster.shared.limits.base import Ban, Offence
from ftp_cluster.shared.limits.redis import RedisLimits
from ftp_cluster.shared.limits.redis.bans_admin import add_ban, list_bans, remove_ban
from tests.conftest import RedisServer
from tests.shared.test_limits_contract_bans import DEFENDER

FOREIGN = "127.0.0.2"
TIMEOUT = 20.0


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float) -> float:
    """Poll ``check`` until true; the seconds it took (fail after ``timeout``)."""
    started = time.monotonic()
    while True:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.01)


def _limits(url: str, namespace: str, worker: str) -> RedisLimits:
    return RedisLimits(url, namespace=namespace, worker_id=worker, defender=DEFENDER)


def test_a_ban_reaches_every_worker_within_a_second(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    async def main() -> None:
        one = _limits(redis_server.url, redis_namespace, "w1")
        two = _limits(redis_server.url, redis_namespace, "w2")
        heard: list[Ban] = []
        two.bans.on_ban = heard.append
        await one.start()
        await two.start()
        try:
            await asyncio.wait_for(two.bans.listening.wait(), 5)
            for _ in range(15):
                await one.bans.offended(FOREIGN, Offence.BAD_PASSWORD)
            assert one.bans.banned(FOREIGN)
            took = await eventually(lambda: two.bans.banned(FOREIGN), timeout=1.0)
            assert took < 1.0
            assert [ban.offender for ban in heard] == [FOREIGN]
            # A worker that starts later loads the bans in force.
            late = _limits(redis_server.url, redis_namespace, "w3")
            await late.start()
            try:
                await asyncio.wait_for(late.bans.listening.wait(), 5)
                assert late.bans.banned(FOREIGN)
                assert await one.bans.unban(FOREIGN)
                await eventually(lambda: not late.bans.banned(FOREIGN), timeout=1.0)
                await eventually(lambda: not two.bans.banned(FOREIGN), timeout=1.0)
            finally:
                await late.close()
        finally:
            await one.close()
            await two.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_admin_add_list_remove(redis_server: RedisServer, redis_namespace: str) -> None:
    async def main() -> None:
        worker = _limits(redis_server.url, redis_namespace, "w1")
        await worker.start()
        try:
            await asyncio.wait_for(worker.bans.listening.wait(), 5)
            url = redis_server.url
            ban = await asyncio.to_thread(add_ban, url, redis_namespace, DEFENDER, FOREIGN, 120)
            assert (ban.offender, ban.seconds, ban.number) == (FOREIGN, 120.0, 1)
            await eventually(lambda: worker.bans.banned(FOREIGN), timeout=1.0)
            again = await asyncio.to_thread(add_ban, url, redis_namespace, DEFENDER, FOREIGN, None)
            assert again.number == 2 and again.seconds == pytest.approx(90.0)
            listed = await asyncio.to_thread(list_bans, url, redis_namespace)
            assert [(b.offender, b.number) for b in listed] == [(FOREIGN, 2)]
            with pytest.raises(ValueError, match="safelisted"):
                add_ban(url, redis_namespace, DEFENDER, "10.0.0.1", None)
            assert await asyncio.to_thread(remove_ban, url, redis_namespace, DEFENDER, FOREIGN)
            await eventually(lambda: not worker.bans.banned(FOREIGN), timeout=1.0)
            assert await asyncio.to_thread(list_bans, url, redis_namespace) == []
            # Escalation forgotten by the remove.
            third = await asyncio.to_thread(add_ban, url, redis_namespace, DEFENDER, FOREIGN, None)
            assert third.number == 1
        finally:
            await worker.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_outage_scores_locally_then_cluster_wide_again(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    server = redis_factory()

    async def main() -> None:
        one = _limits(server.url, redis_namespace, "w1")
        await one.start()
        try:
            await asyncio.wait_for(one.bans.listening.wait(), 5)
            server.stop()
            await eventually(lambda: not one.stats().healthy, timeout=5)
            for _ in range(15):
                ban = await one.bans.offended(FOREIGN, Offence.BAD_PASSWORD)
            assert ban is not None  # the fifteenth, decided here
            assert one.bans.banned(FOREIGN)
            server.start()
            await eventually(lambda: one.stats().healthy, timeout=10)
            await asyncio.wait_for(one.bans.listening.wait(), 5)
            assert one.bans.banned(FOREIGN), "a ban decided in the outage holds on its worker"
            # Scoring is cluster-wide again: another worker hears of the next ban.
            two = _limits(server.url, redis_namespace, "w2")
            await two.start()
            try:
                await asyncio.wait_for(two.bans.listening.wait(), 5)
                assert not two.bans.banned(FOREIGN)
                for _ in range(15):
                    await one.bans.offended("127.0.0.3", Offence.BAD_PASSWORD)
                await eventually(lambda: two.bans.banned("127.0.0.3"), timeout=1.0)
            finally:
                await two.close()
        finally:
            await one.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
