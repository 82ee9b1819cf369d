"""The contract of each part of a limits backend, run on every back end.

A session must see the same limits whatever the deployment, so each part
(:class:`~ftp_cluster.shared.limits.base.Leases`,
:class:`~ftp_cluster.shared.limits.base.Bandwidth`,
:class:`~ftp_cluster.shared.limits.base.Quotas`) has one class of tests
here, run on each of these back ends:

* ``local``: the in-process :class:`LocalLimits`;
* ``redis``: :class:`RedisLimits` on a healthy redis-server;
* ``redis-cluster``: :class:`RedisLimits` on a healthy 3-master Redis Cluster
  (``redis+cluster://``), every script call on one slot;
* ``redis-down-open``: :class:`RedisLimits` (one worker, ``on_failure="open"``)
  whose redis-server is stopped once it has started: its fallback must keep
  the whole contract, at the full caps and rates;
* ``redis-down-closed``: the same in ``"closed"`` mode, which admits no new
  session (:class:`TestFailClosed`) and still paces transfers.

A part's class derives from :class:`Contract` and lists its back ends with
``@pytest.mark.parametrize("backend", [...], indirect=True)``; each of its
``async def test_*(self, limits)`` then runs once per back end, on a started
one that is closed afterwards, in a fresh event loop. Bans and quotas get
the same matrix with one class each.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from ftp_cluster.shared.limits.base import (
    Bucket,
    ConnectionCaps,
    LimitsBackend,
    QuotaLimits,
    QuotaRefusal,
    Refusal,
    Usage,
)
from ftp_cluster.shared.limits.bucket import EFFECTIVE_BURST_SECONDS
from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.shared.limits.redis import RedisLimits
from tests.conftest import RedisServer

IP = "127.0.0.1"
FOREIGN = "127.0.0.2"
RATE = 1_000_000
# Timing margin for waits computed by the backend (no sleeping involved).
MARGIN = 0.05
# Seconds one test may take on one back end.
TIMEOUT = 30.0

#: Back ends that keep every lease: in-process, Redis, and Redis down (open).
LEASE_BACKENDS = ["local", "redis", "redis-cluster", "redis-down-open"]
#: Every back end: in either outage mode, transfers are still paced.
ALL_BACKENDS = [*LEASE_BACKENDS, "redis-down-closed"]


@dataclass(frozen=True)
class Backend:
    """A back end to run a contract on; ``outage``: the Redis to stop once it has started."""

    name: str
    build: Callable[[], LimitsBackend]
    outage: RedisServer | None = None

    async def run(self, test: Callable[[LimitsBackend], Awaitable[None]]) -> None:
        limits = self.build()
        await limits.start()
        try:
            assert limits.stats().healthy
            if self.outage is not None:
                self.outage.stop()
                # Redis is found down by the first call that needs it.
                await limits.bandwidth.reserve([Bucket("contract:outage", 1)], 0)
                assert not limits.stats().healthy
            await test(limits)
            # Every answer above came from the state this back end stands for:
            # Redis itself, or the fallback standing in for it all along.
            assert limits.stats().healthy is (self.outage is None)
        finally:
            await limits.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest, redis_namespace: str) -> Backend:
    """The back end named by the class's ``parametrize("backend", ..., indirect=True)``."""
    name: str = request.param
    if name == "local":
        return Backend(name, LocalLimits)
    if name == "redis":
        url = request.getfixturevalue("redis_server").url
        return Backend(
            name, lambda: RedisLimits(url, namespace=redis_namespace, worker_id="worker-1")
        )
    if name == "redis-cluster":
        cluster_url = request.getfixturevalue("redis_cluster").url()
        return Backend(
            name, lambda: RedisLimits(cluster_url, namespace=redis_namespace, worker_id="worker-1")
        )
    mode: Literal["open", "closed"] = "open" if name == "redis-down-open" else "closed"
    assert name == f"redis-down-{mode}", f"unknown back end {name!r}"
    server: RedisServer = request.getfixturevalue("redis_factory")()

    def build() -> LimitsBackend:
        return RedisLimits(
            server.url, namespace=redis_namespace, worker_id="worker-1", on_failure=mode
        )

    return Backend(name, build, outage=server)


ContractTest = Callable[[Any, LimitsBackend], Coroutine[Any, Any, None]]


class Contract:
    """Base of one part's contract: its ``async def test_*`` run on a started back end.

    Each such method becomes a plain test that takes the ``backend``
    fixture, so pytest runs it once per back end the subclass is
    parametrised with.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, test in list(vars(cls).items()):
            if name.startswith("test_") and inspect.iscoroutinefunction(test):
                setattr(cls, name, _on_backend(test))


def _on_backend(test: ContractTest) -> Callable[[Any, Backend], None]:
    def run(self: Any, backend: Backend) -> None:
        async def body(limits: LimitsBackend) -> None:
            await test(self, limits)

        asyncio.run(asyncio.wait_for(backend.run(body), TIMEOUT))

    # Not functools.wraps: pytest would read the fixtures off the wrapped test.
    run.__name__, run.__qualname__, run.__doc__ = test.__name__, test.__qualname__, test.__doc__
    return run


@pytest.mark.parametrize("backend", LEASE_BACKENDS, indirect=True)
class TestLeases(Contract):
    """:class:`~ftp_cluster.shared.limits.base.Leases`: admission, logins, releases."""

    async def test_admits_up_to_the_server_cap(self, limits: LimitsBackend) -> None:
        caps = ConnectionCaps(server=3)
        for n in range(3):
            assert await limits.leases.admit(f"s{n}", f"10.0.0.{n}", caps) is None
        assert await limits.leases.admit("s3", "10.0.0.9", caps) is Refusal.SERVER_FULL
        assert limits.stats().sessions == 3
        await limits.leases.release("s1")
        assert await limits.leases.admit("s4", "10.0.0.9", caps) is None
        assert await limits.leases.admit("s5", "10.0.0.9", caps) is Refusal.SERVER_FULL

    async def test_per_ip_cap(self, limits: LimitsBackend) -> None:
        caps = ConnectionCaps(server=10, per_ip=2)
        assert await limits.leases.admit("a", IP, caps) is None
        assert await limits.leases.admit("b", IP, caps) is None
        assert await limits.leases.admit("c", IP, caps) is Refusal.IP_FULL
        assert await limits.leases.admit("d", FOREIGN, caps) is None
        await limits.leases.release("a")
        assert await limits.leases.admit("e", IP, caps) is None

    async def test_server_cap_is_checked_before_ip_cap(self, limits: LimitsBackend) -> None:
        caps = ConnectionCaps(server=1, per_ip=1)
        assert await limits.leases.admit("a", IP, caps) is None
        assert await limits.leases.admit("b", IP, caps) is Refusal.SERVER_FULL

    async def test_no_caps_admit_everyone(self, limits: LimitsBackend) -> None:
        for n in range(50):
            assert await limits.leases.admit(str(n), IP, ConnectionCaps()) is None
        assert limits.stats().sessions == 50

    async def test_refused_session_holds_nothing(self, limits: LimitsBackend) -> None:
        caps = ConnectionCaps(server=1)
        assert await limits.leases.admit("a", IP, caps) is None
        assert await limits.leases.admit("b", IP, caps) is Refusal.SERVER_FULL
        assert limits.stats().sessions == 1
        await limits.leases.release("b")  # a refused session's release changes nothing
        assert await limits.leases.admit("c", IP, caps) is Refusal.SERVER_FULL

    async def test_user_cap(self, limits: LimitsBackend) -> None:
        for n in range(4):
            assert await limits.leases.admit(f"s{n}", IP, ConnectionCaps()) is None
        assert await limits.leases.login("s0", "alice", 2) is None
        assert await limits.leases.login("s1", "alice", 2) is None
        assert await limits.leases.login("s2", "alice", 2) is Refusal.USER_FULL
        assert await limits.leases.login("s2", "bob", 2) is None
        # No maximum: counted, never refused.
        assert await limits.leases.login("s3", "alice", None) is None

    async def test_relogin_gives_up_the_previous_user_slot(self, limits: LimitsBackend) -> None:
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

    async def test_logout_frees_the_user_slot_only(self, limits: LimitsBackend) -> None:
        caps = ConnectionCaps(server=2)
        assert await limits.leases.admit("s1", IP, caps) is None
        assert await limits.leases.admit("s2", IP, caps) is None
        assert await limits.leases.login("s1", "alice", 1) is None
        await limits.leases.logout("s1")
        await limits.leases.logout("s1")  # twice is harmless
        assert await limits.leases.login("s2", "alice", 1) is None
        assert await limits.leases.admit("s3", IP, caps) is Refusal.SERVER_FULL
        assert limits.stats().sessions == 2

    async def test_release_frees_every_slot(self, limits: LimitsBackend) -> None:
        caps = ConnectionCaps(server=1, per_ip=1)
        assert await limits.leases.admit("s1", IP, caps) is None
        assert await limits.leases.login("s1", "alice", 1) is None
        await limits.leases.release("s1")
        assert limits.stats().sessions == 0
        assert await limits.leases.admit("s2", IP, caps) is None
        assert await limits.leases.login("s2", "alice", 1) is None

    async def test_unknown_ids_are_ignored(self, limits: LimitsBackend) -> None:
        caps = ConnectionCaps(server=1)
        await limits.leases.release("never-admitted")
        await limits.leases.logout("never-admitted")
        assert await limits.leases.admit("s1", IP, caps) is None
        await limits.leases.release("s1")
        await limits.leases.release("s1")
        assert await limits.leases.admit("s2", IP, caps) is None
        assert await limits.leases.admit("s3", IP, caps) is Refusal.SERVER_FULL


@pytest.mark.parametrize("backend", ["redis-down-closed"], indirect=True)
class TestFailClosed(Contract):
    """Leases while Redis is down in ``"closed"`` mode: no new session gets in."""

    async def test_new_sessions_are_refused_as_unavailable(self, limits: LimitsBackend) -> None:
        for caps in (ConnectionCaps(), ConnectionCaps(server=10, per_ip=5)):
            assert await limits.leases.admit("s1", IP, caps) is Refusal.UNAVAILABLE
        assert limits.stats().sessions == 0
        # A refused session holds nothing to give back.
        await limits.leases.logout("s1")
        await limits.leases.release("s1")
        assert limits.stats().sessions == 0


@pytest.mark.parametrize("backend", ALL_BACKENDS, indirect=True)
class TestBandwidth(Contract):
    """:class:`~ftp_cluster.shared.limits.base.Bandwidth`: reservations and their waits."""

    async def test_fresh_bucket_has_no_credit(self, limits: LimitsBackend) -> None:
        wait = await limits.bandwidth.reserve([Bucket("server:write", RATE)], 2 * RATE)
        assert wait == pytest.approx(2.0, abs=MARGIN)
        # Debt adds up: the next reservation waits behind the first.
        wait = await limits.bandwidth.reserve([Bucket("server:write", RATE)], RATE)
        assert wait == pytest.approx(3.0, abs=MARGIN)

    async def test_idle_credit_is_capped_at_the_burst(self, limits: LimitsBackend) -> None:
        bucket = Bucket("server:read", RATE)
        assert await limits.bandwidth.reserve([bucket], 1) == pytest.approx(0.0, abs=MARGIN)
        # Idle for longer than the burst: the credit stops growing at the burst.
        await asyncio.sleep(EFFECTIVE_BURST_SECONDS + 0.2)
        wait = await limits.bandwidth.reserve([bucket], RATE)
        assert wait == pytest.approx(1.0 - EFFECTIVE_BURST_SECONDS, abs=MARGIN)

    async def test_several_buckets_wait_for_the_slowest(self, limits: LimitsBackend) -> None:
        slow = Bucket("server:write", RATE)
        fast = Bucket("user:alice:write", 4 * RATE)
        wait = await limits.bandwidth.reserve([fast, slow], RATE)
        assert wait == pytest.approx(1.0, abs=MARGIN)
        # Both were charged: the fast one alone now owes a quarter second.
        wait = await limits.bandwidth.reserve([fast], 0)
        assert wait == pytest.approx(0.25, abs=MARGIN)
        assert await limits.bandwidth.reserve([], RATE) == 0.0

    async def test_buckets_are_independent(self, limits: LimitsBackend) -> None:
        await limits.bandwidth.reserve([Bucket("user:alice:read", RATE)], 5 * RATE)
        wait = await limits.bandwidth.reserve([Bucket("user:bob:read", RATE)], RATE // 2)
        assert wait == pytest.approx(0.5, abs=MARGIN)

    async def test_rate_change_applies_to_the_existing_bucket(self, limits: LimitsBackend) -> None:
        assert await limits.bandwidth.reserve([Bucket("server:read", RATE)], RATE) == pytest.approx(
            1.0, abs=MARGIN
        )
        # The debt is kept and now paid off at the doubled rate.
        wait = await limits.bandwidth.reserve([Bucket("server:read", 2 * RATE)], 0)
        assert wait == pytest.approx(0.5, abs=MARGIN)

    async def test_chunk_size_is_positive_and_grows_with_rate(self, limits: LimitsBackend) -> None:
        sizes = [limits.bandwidth.chunk_size(rate) for rate in (1, 1024, RATE, 1000 * RATE)]
        assert all(size > 0 for size in sizes)
        assert sizes == sorted(sizes)


@pytest.mark.parametrize("backend", ALL_BACKENDS, indirect=True)
class TestQuotas(Contract):
    """:class:`~ftp_cluster.shared.limits.base.Quotas`: tallies, reservations, adjustments.

    In outage mode a tally only exists once set meanwhile (a scan): the
    outage-specific rules (last known tally, share of the room) are in
    ``tests/shared/test_limits_quotas.py``.
    """

    async def test_reservations_stop_at_the_quota_edge(self, limits: LimitsBackend) -> None:
        quota = QuotaLimits(bytes=1000)
        assert await limits.quotas.set_usage("alice", Usage(100, 1))
        assert await limits.quotas.reserve("alice", quota, 600) == 600
        # Only what is left of the quota is granted, then nothing.
        assert await limits.quotas.reserve("alice", quota, 600) == 300
        assert await limits.quotas.reserve("alice", quota, 1) == 0
        assert await limits.quotas.usage("alice") == Usage(1000, 1)

    async def test_files_are_all_or_nothing(self, limits: LimitsBackend) -> None:
        quota = QuotaLimits(files=2)
        assert await limits.quotas.set_usage("alice", Usage(0, 1))
        assert await limits.quotas.reserve("alice", quota, 10, files=1) == 10
        assert await limits.quotas.reserve("alice", quota, 10, files=1) is QuotaRefusal.FILES
        # A refusal adds nothing; bytes alone are not limited here.
        assert await limits.quotas.usage("alice") == Usage(10, 2)
        assert await limits.quotas.reserve("alice", quota, 5000) == 5000

    async def test_unlimited_quota_grants_everything(self, limits: LimitsBackend) -> None:
        assert await limits.quotas.set_usage("bob", Usage(5, 5))
        assert await limits.quotas.reserve("bob", QuotaLimits(), 10**12, files=3) == 10**12
        assert await limits.quotas.usage("bob") == Usage(10**12 + 5, 8)

    async def test_adjust_frees_space_and_never_goes_below_zero(
        self, limits: LimitsBackend
    ) -> None:
        quota = QuotaLimits(bytes=100)
        assert await limits.quotas.set_usage("alice", Usage(100, 2))
        assert await limits.quotas.reserve("alice", quota, 1) == 0
        await limits.quotas.adjust("alice", -40, -1)
        assert await limits.quotas.usage("alice") == Usage(60, 1)
        assert await limits.quotas.reserve("alice", quota, 50) == 40
        await limits.quotas.adjust("alice", -1000, -5)
        assert await limits.quotas.usage("alice") == Usage(0, 0)

    async def test_users_are_independent(self, limits: LimitsBackend) -> None:
        quota = QuotaLimits(bytes=10)
        assert await limits.quotas.set_usage("alice", Usage(10, 0))
        assert await limits.quotas.set_usage("bob", Usage(0, 0))
        assert await limits.quotas.reserve("alice", quota, 5) == 0
        assert await limits.quotas.reserve("bob", quota, 5) == 5

    async def test_set_only_if_unknown_keeps_an_existing_tally(self, limits: LimitsBackend) -> None:
        assert await limits.quotas.set_usage("alice", Usage(7, 1), only_if_unknown=True)
        assert not await limits.quotas.set_usage("alice", Usage(9, 9), only_if_unknown=True)
        assert await limits.quotas.usage("alice") == Usage(7, 1)
        # A full scan's result always wins.
        assert await limits.quotas.set_usage("alice", Usage(9, 9))
        assert await limits.quotas.usage("alice") == Usage(9, 9)

    async def test_unknown_tally_grants_nothing(self, limits: LimitsBackend) -> None:
        assert await limits.quotas.usage("nobody") is None
        refusal = await limits.quotas.reserve("nobody", QuotaLimits(bytes=10), 5)
        # Healthy: scan first; Redis down: the tally cannot be had at all (452).
        expected = QuotaRefusal.UNKNOWN if limits.stats().healthy else QuotaRefusal.UNAVAILABLE
        assert refusal is expected
        await limits.quotas.adjust("nobody", 5, 1)  # no tally: stays unknown
        assert await limits.quotas.usage("nobody") is None

    async def test_chunk_size_is_positive(self, limits: LimitsBackend) -> None:
        assert limits.quotas.chunk_size() > 0
