"""What only the Redis backend does: sharing, crash safety, outages, cost.

Every test runs real redis-server processes (see tests/conftest.py); tests
that stop, pause or restart Redis get a dedicated one from ``redis_factory``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from ftp_cluster.shared.limits.base import Bucket, ConnectionCaps, Refusal
from ftp_cluster.shared.limits.redis import RedisLimits
from ftp_cluster.shared.limits.redis.admin import cluster_counts, release_worker_leases
from ftp_cluster.shared.limits.redis.connection import parse_sentinel_url, redact
from ftp_cluster.shared.limits.redis.schema import LEASES, SCRIPTS
from tests.conftest import RedisServer

IP = "127.0.0.1"
FOREIGN = "127.0.0.2"
MiB = 1024 * 1024
NO_CAPS = ConnectionCaps()


def run(coroutine: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll ``check`` until true; return the seconds it took (fail after ``timeout``)."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@asynccontextmanager
async def started(
    server: RedisServer, namespace: str, worker_id: str = "w", **options: Any
) -> AsyncIterator[RedisLimits]:
    """A started backend (``options`` go to RedisLimits), closed on the way out."""
    limits = RedisLimits(server.url, namespace=namespace, worker_id=worker_id, **options)
    await limits.start()
    try:
        yield limits
    finally:
        await limits.close()


async def free_slots(limits: RedisLimits, caps: ConnectionCaps, ip: str = FOREIGN) -> int:
    """How many more sessions ``limits`` could admit now (they are released again)."""
    admitted: list[str] = []
    try:
        for n in range(100):
            if await limits.leases.admit(f"probe-{n}", ip, caps) is not None:
                break
            admitted.append(f"probe-{n}")
        return len(admitted)
    finally:
        for session_id in admitted:
            await limits.leases.release(session_id)


# -- sharing between workers and hosts -----------------------------------------


def test_workers_share_counts_over_tcp_and_unix_socket(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    caps = ConnectionCaps(server=3, per_ip=2)

    async def main() -> None:
        tcp = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="host-a/1")
        unix = RedisLimits(redis_server.unix_url, namespace=redis_namespace, worker_id="host-b/1")
        await tcp.start()
        await unix.start()
        try:
            # Both instances use session id "1": worker ids keep them apart.
            assert await tcp.leases.admit("1", IP, caps) is None
            assert await unix.leases.admit("1", IP, caps) is None
            assert await unix.leases.admit("2", IP, caps) is Refusal.IP_FULL
            assert await unix.leases.admit("2", FOREIGN, caps) is None
            assert await tcp.leases.admit("2", "10.0.0.1", caps) is Refusal.SERVER_FULL

            assert await tcp.leases.login("1", "alice", 2) is None
            assert await unix.leases.login("1", "alice", 2) is None
            assert await unix.leases.login("2", "alice", 2) is Refusal.USER_FULL

            await tcp.leases.release("1")
            assert await unix.leases.login("2", "alice", 2) is None
            assert await unix.leases.admit("3", "10.0.0.1", caps) is None
            assert tcp.stats().healthy and unix.stats().healthy
        finally:
            await tcp.close()
            await unix.close()

    run(main())


def test_close_releases_everything_the_worker_holds(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    caps = ConnectionCaps(server=2)

    async def main() -> None:
        leaving = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="leaving")
        staying = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="staying")
        await leaving.start()
        await staying.start()
        try:
            assert await leaving.leases.admit("1", IP, caps) is None
            assert await leaving.leases.login("1", "alice", 1) is None
            assert await staying.leases.admit("1", IP, caps) is None
            assert await free_slots(staying, caps) == 0
            await leaving.close()
            assert await free_slots(staying, caps) == 1
            assert await staying.leases.login("1", "alice", 1) is None
        finally:
            await staying.close()

    run(main())
    assert redis_server.client().keys(f"{{{redis_namespace}}}:conn:*") == []


def test_cluster_counts(redis_server: RedisServer, redis_namespace: str) -> None:
    async def main() -> None:
        async with started(redis_server, redis_namespace, worker_id="w") as limits:
            for n, ip in enumerate([IP, IP, FOREIGN]):
                assert await limits.leases.admit(str(n), ip, NO_CAPS) is None
            assert await limits.leases.login("0", "alice", None) is None
            await limits.settled()
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts == {
                "sessions": 3,
                "workers": 1,
                "ips": {IP: 2, FOREIGN: 1},
                "users": {"alice": 1},
                "spare_slots": 0,
            }

    run(main())


# -- workers that die ----------------------------------------------------------

_DOOMED_WORKER = """
import asyncio, sys
from ftp_cluster.shared.limits.base import ConnectionCaps
from ftp_cluster.shared.limits.redis import RedisLimits

async def main(url, namespace, worker_id, sessions, ttl):
    limits = RedisLimits(url, namespace=namespace, worker_id=worker_id, lease_ttl=float(ttl))
    await limits.start()
    for n in range(int(sessions)):
        assert await limits.leases.admit(str(n), "127.0.0.1", ConnectionCaps()) is None
        assert await limits.leases.login(str(n), "alice", None) is None
    await limits.settled()  # uncapped changes are not waited for otherwise
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main(*sys.argv[1:]))
"""


@contextmanager
def doomed_worker(
    url: str, namespace: str, worker_id: str, sessions: int, ttl: float
) -> Iterator[subprocess.Popen[str]]:
    """A real worker process holding ``sessions`` leases, to be SIGKILLed."""
    process = subprocess.Popen(
        [sys.executable, "-c", _DOOMED_WORKER, url, namespace, worker_id, str(sessions), str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready and process.stdout.readline().strip() == "ready", "worker did not start"
        yield process
    finally:
        process.kill()
        process.wait()


def test_release_worker_leases_frees_a_dead_workers_slots(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    caps = ConnectionCaps(server=3)
    with doomed_worker(redis_server.url, redis_namespace, "doomed", 2, ttl=30) as worker:
        worker.kill()
        worker.wait()

        async def before() -> None:
            limits = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="other")
            try:
                assert await free_slots(limits, caps) == 1
                assert await limits.leases.login("x", "alice", 2) is Refusal.USER_FULL
            finally:
                await limits.close()

        run(before())
        started = time.monotonic()
        assert release_worker_leases(redis_server.url, redis_namespace, "doomed") == 2
        assert time.monotonic() - started < 1.0
        assert release_worker_leases(redis_server.url, redis_namespace, "doomed") == 0

        async def after() -> None:
            limits = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="other")
            try:
                assert await free_slots(limits, caps) == 3
                assert await limits.leases.login("x", "alice", 1) is None
            finally:
                await limits.close()

        run(after())


def test_release_worker_leases_without_redis_returns_zero(
    redis_factory: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory()
    server.stop()
    started = time.monotonic()
    assert release_worker_leases(server.url, "ns", "gone") == 0
    assert time.monotonic() - started < 2.0
    assert "could not release the leases of worker gone" in caplog.text


def test_leases_of_a_vanished_host_expire(redis_server: RedisServer, redis_namespace: str) -> None:
    ttl = 1.0
    caps = ConnectionCaps(server=2)
    with doomed_worker(redis_server.url, redis_namespace, "vanished", 2, ttl=ttl) as worker:
        worker.kill()  # and nobody calls release_worker_leases: the host is gone
        worker.wait()
        killed = time.monotonic()

        async def main() -> None:
            limits = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="other")
            try:
                assert await free_slots(limits, caps) == 0

                async def expired() -> bool:
                    return await free_slots(limits, caps) == 2

                await eventually(expired, timeout=ttl + 2)
                assert time.monotonic() - killed > ttl / 2
            finally:
                await limits.close()

        run(main())


def test_live_leases_outlast_their_ttl(redis_server: RedisServer, redis_namespace: str) -> None:
    """The refresh task keeps a live worker's leases from expiring."""
    ttl = 0.6
    caps = ConnectionCaps(server=1)

    async def main() -> None:
        holder = RedisLimits(
            redis_server.url, namespace=redis_namespace, worker_id="holder", lease_ttl=ttl
        )
        other = RedisLimits(redis_server.url, namespace=redis_namespace, worker_id="other")
        await holder.start()
        try:
            assert await holder.leases.admit("1", IP, caps) is None
            await asyncio.sleep(3 * ttl)
            assert await other.leases.admit("1", IP, caps) is Refusal.SERVER_FULL
        finally:
            await holder.close()
            await other.close()

    run(main())


# -- Redis unreachable -----------------------------------------------------------


def test_closed_mode_refuses_new_sessions_while_redis_is_down(
    redis_factory: Callable[[], RedisServer],
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ftp_cluster.limits")
    server = redis_factory()
    rate = 2 * MiB

    async def main() -> None:
        limits = RedisLimits(
            server.url, namespace=redis_namespace, worker_id="w1", workers=2, on_failure="closed"
        )
        other = RedisLimits(server.url, namespace=redis_namespace, worker_id="w2", workers=2)
        await limits.start()
        try:
            for n in range(3):
                assert await limits.leases.admit(str(n), IP, NO_CAPS) is None
            server.stop()
            started = time.monotonic()
            # A capped admission waits for Redis, so the outage refuses the
            # very first one (an uncapped one would be admitted, not waiting).
            assert (
                await limits.leases.admit("3", IP, ConnectionCaps(server=100))
                is Refusal.UNAVAILABLE
            )
            assert await limits.leases.admit("4", IP, NO_CAPS) is Refusal.UNAVAILABLE
            assert not limits.stats().healthy
            # Admitted sessions carry on: logins count against this worker's
            # share of the user's cap, ceil(3 / 2) = 2.
            assert await limits.leases.login("0", "alice", 3) is None
            assert await limits.leases.login("1", "alice", 3) is None
            assert await limits.leases.login("2", "alice", 3) is Refusal.USER_FULL
            # Bandwidth continues locally at ceil(rate / 2).
            wait = await limits.bandwidth.reserve([Bucket("server:write", rate)], rate // 2)
            assert wait == pytest.approx(1.0, abs=0.05)
            assert time.monotonic() - started < 1.5, "calls must not hang while Redis is down"

            server.start()
            took = await eventually(is_healthy(limits), timeout=5)
            assert took < 3
            # The logins made during the outage now count cluster-wide.
            assert await other.leases.admit("x", IP, NO_CAPS) is None
            assert await other.leases.login("x", "alice", 2) is Refusal.USER_FULL
            assert await other.leases.login("x", "alice", 3) is None
        finally:
            await limits.close()
            await other.close()

    run(main())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1, "one warning per outage"
    assert "unreachable" in warnings[0].getMessage()
    assert len(infos) == 1 and "reachable again" in infos[0].getMessage()


def is_healthy(limits: RedisLimits) -> Callable[[], Awaitable[bool]]:
    """For :func:`eventually`: whether ``limits`` is healthy (no outage, resynced)."""

    async def check() -> bool:
        return limits.stats().healthy

    return check


def test_open_mode_admits_a_share_and_resyncs_after_restart(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    server = redis_factory()
    caps = ConnectionCaps(server=5, per_ip=3)  # shares with 2 workers: 3 and 2

    async def main() -> None:
        limits = RedisLimits(
            server.url,
            namespace=redis_namespace,
            worker_id="w1",
            workers=2,
            on_failure="open",
            lease_ttl=30,
        )
        other = RedisLimits(server.url, namespace=redis_namespace, worker_id="w2")
        await limits.start()
        try:
            assert await limits.leases.admit("0", IP, caps) is None
            server.stop()
            assert await limits.leases.admit("1", IP, caps) is None
            assert await limits.leases.admit("2", IP, caps) is Refusal.IP_FULL
            assert await limits.leases.admit("3", FOREIGN, caps) is None
            assert await limits.leases.admit("4", "10.0.0.1", caps) is Refusal.SERVER_FULL
            await limits.leases.release("1")  # ended during the outage
            assert await limits.leases.login("3", "alice", None) is None
            assert not limits.stats().healthy

            server.start()  # empty: every lease is gone
            await eventually(is_healthy(limits), timeout=5)
            # Exactly sessions 0 and 3 are registered again.
            assert await free_slots(other, ConnectionCaps(server=5)) == 3
            assert await free_slots(other, ConnectionCaps(per_ip=3), ip=IP) == 2
            assert await other.leases.admit("x", IP, NO_CAPS) is None
            assert await other.leases.login("x", "alice", 1) is Refusal.USER_FULL

            # A session admitted during the outage is released normally.
            await limits.leases.release("3")
            assert await free_slots(other, ConnectionCaps(server=5)) == 3
            assert await other.leases.login("x", "alice", 1) is None
        finally:
            await limits.close()
            await other.close()

    run(main())


def test_paused_redis_times_out_and_stale_leases_are_dropped(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    """A hung Redis (SIGSTOP) must not hang the worker, and keeps its data."""
    server = redis_factory()
    caps = ConnectionCaps(server=2)

    async def main() -> None:
        limits = RedisLimits(
            server.url, namespace=redis_namespace, worker_id="w1", on_failure="open", lease_ttl=30
        )
        other = RedisLimits(server.url, namespace=redis_namespace, worker_id="w2")
        await limits.start()
        try:
            assert await limits.leases.admit("1", IP, caps) is None
            assert await limits.leases.login("1", "alice", None) is None
            with server.hung():
                started = time.monotonic()
                # The first call times out (Redis will still run it when it
                # resumes); the release after it is not even sent.
                assert await limits.leases.admit("2", IP, caps) is None
                await limits.leases.release("1")
                assert time.monotonic() - started < 1.5
                assert not limits.stats().healthy
            await eventually(is_healthy(limits), timeout=5)
            # Session 1's lease, still in Redis, was dropped; session 2's added.
            assert await free_slots(other, caps) == 1
            assert await other.leases.login("x", "alice", 1) is None
        finally:
            await limits.close()
            await other.close()

    run(main())


def test_uncapped_changes_do_not_wait_for_redis(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    """No cap counts them, so no session waits; Redis still gets every lease."""
    server = redis_factory()

    async def main() -> None:
        async with started(server, redis_namespace, worker_id="w", socket_timeout=10) as limits:
            with server.hung():
                began = time.monotonic()
                assert await limits.leases.admit("1", IP, NO_CAPS) is None
                assert await limits.leases.login("1", "alice", None) is None
                assert await limits.leases.admit("2", FOREIGN, NO_CAPS) is None
                await limits.leases.release("2")
                assert time.monotonic() - began < 2.5, "uncapped changes waited for Redis"
                capped = asyncio.create_task(
                    limits.leases.admit("3", IP, ConnectionCaps(server=10))
                )
                await asyncio.sleep(0.3)
                assert not capped.done(), "a capped admission must wait for Redis"
            assert await capped is None
            await limits.settled()
            counts = cluster_counts(server.client(), redis_namespace)
            assert counts == {
                "sessions": 2,
                "workers": 1,
                "ips": {IP: 2},
                "users": {"alice": 1},
                "spare_slots": 0,  # a cap of 10 is too small for spares
            }
            assert limits.stats().healthy

    run(main())


def test_sessions_that_come_and_go_within_one_batch_cost_no_call(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    """Uncapped sessions that ended before their admission was sent never reach Redis."""

    async def main() -> None:
        async with started(redis_server, redis_namespace) as limits:
            assert await limits.leases.admit("stays", IP, NO_CAPS) is None
            assert await limits.leases.login("stays", "alice", None) is None
            await limits.settled()
            before = limits.stats().commands_sent
            for n in range(20):
                assert await limits.leases.admit(f"s{n}", IP, NO_CAPS) is None
                assert await limits.leases.login(f"s{n}", "alice", None) is None
                await limits.leases.logout(f"s{n}")
                await limits.leases.release(f"s{n}")
            await limits.settled()
            assert limits.stats().commands_sent == before
            counts = cluster_counts(redis_server.client(), redis_namespace)
            assert counts["sessions"] == 1 and counts["users"] == {"alice": 1}
            # One that stays past its batch still reaches Redis, and leaves it.
            assert await limits.leases.admit("late", IP, NO_CAPS) is None
            await limits.settled()
            assert cluster_counts(redis_server.client(), redis_namespace)["sessions"] == 2
            await limits.leases.release("late")
            await limits.settled()
            assert cluster_counts(redis_server.client(), redis_namespace)["sessions"] == 1
        assert redis_server.client().keys(f"{redis_namespace}:*") == []

    run(main())


def test_a_large_batch_goes_in_script_calls_of_bounded_length(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    """300 admissions queued at once: two calls (256 + 44), every lease in place."""

    async def main() -> None:
        async with started(redis_server, redis_namespace) as limits:
            before = limits.stats().commands_sent
            for n in range(300):
                assert await limits.leases.admit(f"s{n}", IP, NO_CAPS) is None
            await limits.settled()
            assert limits.stats().commands_sent - before == 2
            assert cluster_counts(redis_server.client(), redis_namespace)["sessions"] == 300

    run(main())


def test_an_uncapped_change_that_fails_starts_the_outage(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    server = redis_factory()

    async def main() -> None:
        limits = RedisLimits(server.url, namespace=redis_namespace, worker_id="w")
        await limits.start()

        async def unhealthy() -> bool:
            return not limits.stats().healthy

        try:
            server.stop()
            # Admitted at once: nothing was known to be wrong, and no cap is at stake.
            assert await limits.leases.admit("1", IP, NO_CAPS) is None
            await eventually(unhealthy, timeout=5)
            assert await limits.leases.admit("2", IP, NO_CAPS) is Refusal.UNAVAILABLE
            server.start()
            await eventually(is_healthy(limits), timeout=5)
            await limits.settled()
            # The resync registered the session the failed change was for.
            assert cluster_counts(server.client(), redis_namespace)["sessions"] == 1
        finally:
            await limits.close()

    run(main())


def test_redis_that_never_answered(redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    server.stop()

    async def main() -> None:
        limits = RedisLimits(server.url, namespace="ns", worker_id="w", on_failure="closed")
        started = time.monotonic()
        await limits.start()
        try:
            assert not limits.stats().healthy
            assert await limits.leases.admit("1", IP, NO_CAPS) is Refusal.UNAVAILABLE
            assert time.monotonic() - started < 1.5
            server.start()
            await eventually(is_healthy(limits), timeout=5)
            assert await limits.leases.admit("1", IP, NO_CAPS) is None
        finally:
            await limits.close()

    run(main())


# -- Redis restarts and forgets ---------------------------------------------------


def test_leases_are_registered_again_after_a_restart(
    redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    server = redis_factory()
    caps = ConnectionCaps(server=2)

    async def main() -> None:
        # A long TTL: the restart must be noticed well before the refresh.
        holder = RedisLimits(server.url, namespace=redis_namespace, worker_id="w1", lease_ttl=60)
        other = RedisLimits(server.url, namespace=redis_namespace, worker_id="w2")
        await holder.start()
        try:
            assert await holder.leases.admit("1", IP, caps) is None
            assert await holder.leases.admit("2", IP, caps) is None
            server.restart()

            async def counted_again() -> bool:
                return await free_slots(other, caps) == 0

            took = await eventually(counted_again, timeout=5)
            assert took < 3
        finally:
            await holder.close()
            await other.close()

    run(main())


def test_forgotten_scripts_are_reloaded(redis_server: RedisServer, redis_namespace: str) -> None:
    async def main() -> None:
        async with started(redis_server, redis_namespace, worker_id="w") as limits:
            assert await limits.leases.admit("1", IP, NO_CAPS) is None
            await limits.settled()
            redis_server.client().script_flush()
            before = limits.stats().commands_sent
            assert await limits.leases.admit("2", IP, NO_CAPS) is None
            await limits.settled()
            # The failed EVALSHA, one SCRIPT LOAD per script, the retried EVALSHA.
            assert limits.stats().commands_sent - before == len(SCRIPTS) + 2
            assert limits.stats().healthy
            assert redis_server.client().script_exists(*(s.sha for s in SCRIPTS)) == [True] * len(
                SCRIPTS
            )

    run(main())


def _restart(server: RedisServer) -> None:
    os.kill(server.pid, signal.SIGKILL)
    server.stop()  # reaps it
    server.start()


def _close_idle_clients(server: RedisServer) -> None:
    server.client().config_set("timeout", 1)
    time.sleep(2.5)  # the loop is blocked: the worker sees the closes only when it calls
    # Only the client asking is left: the worker's connections were all closed.
    assert server.client().info("clients")["connected_clients"] == 1


@pytest.mark.parametrize("dropped_by", [_restart, _close_idle_clients])
def test_connections_dropped_while_idle_are_no_outage(
    redis_factory: Callable[[], RedisServer],
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
    dropped_by: Callable[[RedisServer], None],
) -> None:
    """Redis closed the idle worker's connections; the next calls reconnect, no 421."""
    caplog.set_level(logging.INFO, logger="ftp_cluster.limits")
    server = redis_factory()
    caps = ConnectionCaps(server=2, per_ip=2)
    buckets = [Bucket("server:write", MiB)]

    async def main() -> None:
        # A long TTL: no refresh reconnects on the worker's behalf meanwhile.
        async with started(
            server, redis_namespace, worker_id="w1", on_failure="closed", lease_ttl=60
        ) as limits:
            # Both the lease channel and a pooled connection get used.
            assert await limits.leases.admit("1", IP, caps) is None
            assert await limits.leases.login("1", "alice", 1) is None
            await limits.bandwidth.reserve(buckets, 1024)
            await limits.leases.release("1")
            dropped_by(server)
            assert await limits.leases.admit("2", IP, caps) is None
            assert await limits.leases.login("2", "alice", 1) is None
            await asyncio.sleep(0.05)  # the loop of an idle worker sees the sockets close
            assert await limits.bandwidth.reserve(buckets, 1024) < 0.1
            assert limits.stats().healthy
            # Counted once each: the other slot is free, alice is at her cap.
            assert await limits.leases.admit("3", IP, caps) is None
            assert await limits.leases.admit("4", IP, caps) is Refusal.SERVER_FULL
            assert await limits.leases.login("3", "alice", 1) is Refusal.USER_FULL

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_lease_operations_are_safe_to_repeat(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    """A batch sent again after its reply was lost must not count a session twice."""
    client = redis_server.client()
    index, server = f"{{{redis_namespace}}}:worker:w", f"{{{redis_namespace}}}:conn:server"
    prefix = f"{{{redis_namespace}}}:conn:"
    ip_key, user_key = f"{prefix}ip:{IP}", f"{prefix}user:alice"
    keys = [index, server, ip_key, user_key]

    def batch(*operations: str | int) -> list[int]:
        result = client.eval(LEASES.source, len(keys), *keys, "w", 60_000, *operations)
        return [int(item) for item in result]

    admit_login = ("a", "1", 3, IP, 1, 1, "l", "1", 4, "alice", 1, 0)
    assert batch(*admit_login) == [0, 0]
    assert batch(*admit_login) == [0, 0]
    assert client.zcard(server) == client.zcard(ip_key) == client.zcard(user_key) == 1
    # Others are still refused, and logging in again as alice counts anew.
    assert batch("a", "2", 3, IP, 1, -1, "l", "2", 4, "alice", 1, 0) == [1, 1]
    assert batch("l", "1", 4, "alice", 1, 4) == [0]
    release = ("r", "1", 3, 4)
    assert batch(*release) == [3]
    assert batch(*release) == [0]
    assert client.zcard(server) == client.zcard(user_key) == 0
    assert client.hlen(index) == 0


def test_uncapped_operations_repeat_safely_and_look_nothing_up(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    """With no cap there is nothing to check: no lookup, and a repeat still counts once."""
    client = redis_server.client()
    index, server = f"{{{redis_namespace}}}:worker:w", f"{{{redis_namespace}}}:conn:server"
    prefix = f"{{{redis_namespace}}}:conn:"
    ip_key, user_key = f"{prefix}ip:{IP}", f"{prefix}user:alice"
    keys = [index, server, ip_key, user_key]

    def lookups() -> int:
        stats: dict[str, dict[str, int]] = client.info("commandstats")
        return stats.get("cmdstat_zscore", {}).get("calls", 0)

    before = lookups()
    admit_login = ("a", "1", 3, IP, -1, -1, "l", "1", 4, "alice", -1, 0)
    for _ in range(2):
        result = client.eval(LEASES.source, len(keys), *keys, "w", 60_000, *admit_login)
        assert [int(item) for item in result] == [0, 0]
    assert lookups() == before
    assert client.zcard(server) == client.zcard(ip_key) == client.zcard(user_key) == 1
    client.eval(LEASES.source, len(keys), *keys, "w", 60_000, "r", "1", 3, 4)
    assert client.zcard(server) == client.zcard(user_key) == client.hlen(index) == 0


# -- bandwidth --------------------------------------------------------------------


@pytest.mark.parametrize("rate", [64 * 1024, 1 * MiB, 50 * MiB])
def test_commands_per_mib_moved(redis_server: RedisServer, redis_namespace: str, rate: int) -> None:
    buckets = [Bucket("server:write", rate), Bucket("user:alice:write", 2 * rate)]

    async def main() -> None:
        async with started(redis_server, redis_namespace, worker_id="w") as limits:
            chunk = min(limits.bandwidth.chunk_size(bucket.rate) for bucket in buckets)
            before = limits.stats().commands_sent
            moved = 0
            while moved < 8 * MiB:
                await limits.bandwidth.reserve(
                    buckets, chunk
                )  # a transfer loop, minus the sleeping
                moved += chunk
            per_mib = (limits.stats().commands_sent - before) / (moved / MiB)
            assert 0 < per_mib <= 16
            assert limits.stats().healthy

    run(main())


def test_aggregate_rate_of_concurrent_transfers_on_two_workers(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    rate = 4 * MiB
    duration = 2.0
    bucket = Bucket("server:write", rate)

    async def transfer(limits: RedisLimits, deadline: float) -> int:
        moved = 0
        chunk = limits.bandwidth.chunk_size(rate)
        while True:
            await asyncio.sleep(await limits.bandwidth.reserve([bucket], chunk))
            if time.monotonic() > deadline:
                return moved
            moved += chunk

    async def main() -> None:
        workers = [
            RedisLimits(redis_server.url, namespace=redis_namespace, worker_id=f"w{n}")
            for n in range(2)
        ]
        for limits in workers:
            await limits.start()
        try:
            deadline = time.monotonic() + duration
            moved = await asyncio.gather(
                *(transfer(limits, deadline) for limits in workers for _ in range(4))
            )
            assert sum(moved) / duration == pytest.approx(rate, rel=0.10)
            assert all(limits.stats().healthy for limits in workers)
        finally:
            for limits in workers:
                await limits.close()

    run(main())


def test_chunk_size() -> None:
    limits = RedisLimits("redis://127.0.0.1:1/0", namespace="ns", worker_id="w")
    assert limits.bandwidth.chunk_size(1) == 128 * 1024
    assert limits.bandwidth.chunk_size(1 * MiB) == 128 * 1024
    assert limits.bandwidth.chunk_size(100 * MiB) == 5 * MiB


# -- URLs ---------------------------------------------------------------------------


def test_sentinel_urls_are_parsed() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://user:s%40cret@10.0.0.1:26380,[::1],sentinel.example/mymaster/3"
        "?sentinel_password=sp"
    )
    assert parsed is not None
    assert parsed.sentinels == (("10.0.0.1", 26380), ("::1", 26379), ("sentinel.example", 26379))
    assert parsed.service == "mymaster"
    assert parsed.db == 3
    assert (parsed.username, parsed.password) == ("user", "s@cret")
    assert parsed.sentinel_password == "sp"
    assert not parsed.ssl

    tls = parse_sentinel_url("rediss+sentinel://h:1/svc")
    assert tls is not None and tls.ssl and tls.db == 0 and tls.password is None

    assert parse_sentinel_url("redis://127.0.0.1:6379/0") is None
    assert parse_sentinel_url("unix:///tmp/redis.sock") is None
    for bad in (
        "redis+sentinel://h:1/",
        "redis+sentinel:///svc",
        "redis+sentinel://h:1/svc/0/extra",
        "redis+sentinel://h:1/svc?timeout=3",
    ):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)


def test_passwords_are_redacted() -> None:
    assert redact("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact("rediss://user:pw@h:1/0") == "rediss://user:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"


def test_through_sentinel(redis_factory: Callable[[], RedisServer], redis_namespace: str) -> None:
    master = redis_factory()
    sentinel = _start_sentinel(master)
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/ftp/0"

        async def main() -> None:
            limits = RedisLimits(url, namespace=redis_namespace, worker_id="w")
            await limits.start()
            try:
                assert await limits.leases.admit("1", IP, ConnectionCaps(server=1)) is None
                assert (
                    await limits.leases.admit("2", IP, ConnectionCaps(server=1))
                    is Refusal.SERVER_FULL
                )
                assert limits.stats().healthy
            finally:
                await limits.close()

        run(main())
        assert master.client().exists(f"{{{redis_namespace}}}:worker:w") == 0
        with doomed_worker(url, redis_namespace, "doomed", 1, ttl=30):
            pass
        assert release_worker_leases(url, redis_namespace, "doomed") == 1
    finally:
        sentinel.stop()


class _Sentinel:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)


def _start_sentinel(master: RedisServer) -> _Sentinel:
    import redis  # noqa: PLC0415

    port = RedisServer(master.executable, master.directory).port  # just a free port
    config = master.directory / "sentinel.conf"
    config.write_text(
        f"bind 127.0.0.1\nport {port}\ndir {master.directory}\n"
        f"sentinel monitor ftp 127.0.0.1 {master.port} 1\n"
    )
    process = subprocess.Popen(
        [master.executable, str(config), "--sentinel", "--logfile", "sentinel.log"],
        stdin=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                if client.sentinel_get_master_addr_by_name("ftp"):
                    return _Sentinel(process, port)
            except redis.RedisError:
                pass
            time.sleep(0.05)
    finally:
        client.close()
    process.kill()
    process.wait()
    pytest.fail("redis sentinel did not start")
