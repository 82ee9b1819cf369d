"""The contract of :class:`~ftp_cluster.shared.limits.base.Bans`, on every back end.

The same matrix as ``test_limits_contract.py`` (in-process, Redis, a Redis
Cluster, Redis stopped once started in either ``on_failure`` mode), with the defender
switched on: in an outage a worker scores and bans by itself, by the same
rules.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from ftp_cluster.shared.limits.base import Ban, LimitsBackend, Offence
from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.shared.limits.redis import RedisLimits
from ftp_cluster.shared.settings import DefenderSettings
from tests.conftest import RedisServer
from tests.shared.test_limits_contract import Backend, Contract

IP = "127.0.0.1"
FOREIGN = "127.0.0.2"
DEFENDER = DefenderSettings(
    enabled=True,
    threshold=15,
    observation_time=60.0,
    ban_time=60.0,
    ban_time_increment=0.5,
    safelist=("10.0.0.0/8", "2001:db8:1::/48"),
    login_delay=0.0,
)
BACKENDS = ["local", "redis", "redis-cluster", "redis-down-open", "redis-down-closed"]


def _with(defender: DefenderSettings, name: str, request: pytest.FixtureRequest) -> Backend:
    namespace = request.getfixturevalue("redis_namespace")
    if name == "local":
        return Backend(name, lambda: LocalLimits(defender=defender))
    if name == "redis":
        url = request.getfixturevalue("redis_server").url
        return Backend(
            name,
            lambda: RedisLimits(url, namespace=namespace, worker_id="w1", defender=defender),
        )
    if name == "redis-cluster":
        cluster_url = request.getfixturevalue("redis_cluster").url()
        return Backend(
            name,
            lambda: RedisLimits(
                cluster_url, namespace=namespace, worker_id="w1", defender=defender
            ),
        )
    mode: Literal["open", "closed"] = "open" if name == "redis-down-open" else "closed"
    server: RedisServer = request.getfixturevalue("redis_factory")()

    def build() -> LimitsBackend:
        return RedisLimits(
            server.url, namespace=namespace, worker_id="w1", on_failure=mode, defender=defender
        )

    return Backend(name, build, outage=server)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """This module's back ends: the contract's, with the defender on."""
    defender = getattr(request.cls, "defender", DEFENDER)
    return _with(defender, request.param, request)


async def _fail(limits: LimitsBackend, ip: str, times: int, offence: Offence) -> list[Ban | None]:
    return [await limits.bans.offended(ip, offence) for _ in range(times)]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestBans(Contract):
    """Scores, the threshold, bans, their escalation, the safelist, IPv6 networks."""

    async def test_banned_at_the_threshold(self, limits: LimitsBackend) -> None:
        heard: list[Ban] = []
        limits.bans.on_ban = heard.append
        results = await _fail(limits, FOREIGN, 15, Offence.BAD_PASSWORD)
        assert results[:14] == [None] * 14
        ban = results[14]
        assert ban is not None and ban.offender == FOREIGN and ban.number == 1
        assert ban.seconds == pytest.approx(60.0, abs=1)
        assert limits.bans.banned(FOREIGN)
        assert not limits.bans.banned(IP)
        assert [b.offender for b in heard] == [FOREIGN]
        assert [b.offender for b in await limits.bans.bans()] == [FOREIGN]

    async def test_offences_score_differently(self, limits: LimitsBackend) -> None:
        # 2 per unknown user, 3 per limit: 7 * 2 = 14, then a limit reaches 17.
        assert await _fail(limits, FOREIGN, 7, Offence.UNKNOWN_USER) == [None] * 7
        assert await limits.bans.offended(FOREIGN, Offence.LIMIT_EXCEEDED) is not None
        assert limits.bans.banned(FOREIGN)

    async def test_a_banned_ip_scores_nothing_more(self, limits: LimitsBackend) -> None:
        await _fail(limits, FOREIGN, 15, Offence.BAD_PASSWORD)
        assert await _fail(limits, FOREIGN, 20, Offence.BAD_PASSWORD) == [None] * 20
        assert [b.number for b in await limits.bans.bans()] in ([1], [0])

    async def test_the_safelist_is_never_banned(self, limits: LimitsBackend) -> None:
        for ip in ("10.1.2.3", "2001:db8:1:2::5"):
            assert await _fail(limits, ip, 40, Offence.UNKNOWN_USER) == [None] * 40
            assert not limits.bans.banned(ip)
            with pytest.raises(ValueError, match="safelisted"):
                await limits.bans.ban(ip)

    async def test_ipv6_is_scored_per_64(self, limits: LimitsBackend) -> None:
        await _fail(limits, "2001:db8:2:3::1", 8, Offence.BAD_PASSWORD)
        ban = (await _fail(limits, "2001:db8:2:3:ffff::9", 7, Offence.BAD_PASSWORD))[-1]
        assert ban is not None and ban.offender == "2001:db8:2:3::/64"
        assert limits.bans.banned("2001:db8:2:3:1:2:3:4")
        assert not limits.bans.banned("2001:db8:2:4::1")

    async def test_further_bans_escalate(self, limits: LimitsBackend) -> None:
        first = await limits.bans.ban(FOREIGN)
        second = await limits.bans.ban(FOREIGN)
        third = await limits.bans.ban(FOREIGN)
        assert (first.number, second.number, third.number) == (1, 2, 3)
        assert first.seconds == pytest.approx(60.0, abs=0.01)
        assert second.seconds == pytest.approx(90.0, abs=0.01)
        assert third.seconds == pytest.approx(135.0, abs=0.01)

    async def test_explicit_duration(self, limits: LimitsBackend) -> None:
        ban = await limits.bans.ban(FOREIGN, 5.0)
        assert ban.seconds == pytest.approx(5.0, abs=0.01)
        assert limits.bans.banned(FOREIGN)

    async def test_unban_lifts_and_forgets(self, limits: LimitsBackend) -> None:
        await limits.bans.ban(FOREIGN)
        await limits.bans.ban(FOREIGN)
        assert await limits.bans.unban(FOREIGN)
        assert not limits.bans.banned(FOREIGN)
        assert await limits.bans.bans() == []
        assert not await limits.bans.unban(FOREIGN)
        assert (await limits.bans.ban(FOREIGN)).number == 1  # escalation forgotten
        await limits.bans.unban(FOREIGN)
        # ...and the score too: 14 more failures do not ban.
        await _fail(limits, FOREIGN, 14, Offence.BAD_PASSWORD)
        await limits.bans.unban(FOREIGN)
        assert await _fail(limits, FOREIGN, 14, Offence.BAD_PASSWORD) == [None] * 14

    async def test_a_ban_ends(self, limits: LimitsBackend) -> None:
        await limits.bans.ban(FOREIGN, 0.3)
        assert limits.bans.banned(FOREIGN)
        await asyncio.sleep(0.5)
        assert not limits.bans.banned(FOREIGN)
        assert await limits.bans.bans() == []


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestObservationTime(Contract):
    """Failures older than ``observation_time`` no longer count."""

    defender = DefenderSettings(enabled=True, threshold=3, observation_time=0.4, login_delay=0)

    async def test_old_failures_expire(self, limits: LimitsBackend) -> None:
        assert await _fail(limits, FOREIGN, 2, Offence.BAD_PASSWORD) == [None, None]
        await asyncio.sleep(0.6)
        assert await _fail(limits, FOREIGN, 2, Offence.BAD_PASSWORD) == [None, None]
        assert await limits.bans.offended(FOREIGN, Offence.BAD_PASSWORD) is not None


@pytest.mark.parametrize("backend", ["local", "redis"], indirect=True)
class TestDisabled(Contract):
    """With ``enabled = false`` (the default) nothing is scored."""

    defender = DefenderSettings()

    async def test_nothing_is_banned(self, limits: LimitsBackend) -> None:
        assert await _fail(limits, FOREIGN, 50, Offence.UNKNOWN_USER) == [None] * 50
        assert not limits.bans.banned(FOREIGN)
