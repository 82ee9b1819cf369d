"""Redis Cluster URLs, and the limits following their slot when it moves to another master.

The contract tests run every part on a cluster (``redis-cluster`` back end);
these cover what only a cluster has: its URL forms, and a slot migrating
under a running backend (its lease channel meets ``MOVED``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from ftp_cluster.shared.config import check_setting
from ftp_cluster.shared.fields import Invalid
from ftp_cluster.shared.limits.base import Bucket, ConnectionCaps, Refusal
from ftp_cluster.shared.limits.redis import RedisLimits
from ftp_cluster.shared.limits.redis.admin import cluster_counts, release_worker_leases
from ftp_cluster.shared.limits.redis.cluster import ClusterURL, parse_cluster_url
from ftp_cluster.shared.limits.redis.connection import sync_client
from ftp_cluster.shared.limits.redis.schema import Keys
from ftp_cluster.shared.settings import RedisSettings
from tests.redis_cluster import ClusterNode, LocalCluster

IP = "127.0.0.1"


def test_cluster_urls() -> None:
    assert parse_cluster_url("redis://127.0.0.1:6379") is None
    assert parse_cluster_url("redis+cluster://h1:7000,h2") == ClusterURL(
        nodes=(("h1", 7000), ("h2", 6379))
    )
    parsed = parse_cluster_url(
        "rediss+cluster://ftp:p%40ss@[::1]:7000,h2:7001/?ssl_ca_certs=/ca.pem&ssl_check_hostname=no"
    )
    assert parsed == ClusterURL(
        nodes=(("::1", 7000), ("h2", 7001)),
        username="ftp",
        password="p@ss",
        ssl=True,
        options={"ssl_ca_certs": "/ca.pem", "ssl_check_hostname": False},
    )
    assert parse_cluster_url("redis+cluster://:secret@h1:7000") == ClusterURL(
        nodes=(("h1", 7000),), password="secret"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "no node address"),
        ("redis+cluster://h1:7000/1", "no databases"),
        ("redis+cluster://h1:7000/?db=1", "unknown Redis Cluster URL options: db"),
        ("redis+cluster://:7000", "empty node host"),
    ],
)
def test_bad_cluster_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cluster_url(url)


def test_settings_take_cluster_urls() -> None:
    for url in ("redis+cluster://:s3cret-x@h1:7000,h2:7001", "rediss+cluster://h1"):
        assert check_setting(RedisSettings, "url", url) == url
    with pytest.raises(Invalid, match="no databases"):
        check_setting(RedisSettings, "url", "redis+cluster://h1:7000/3")


def move_slot(cluster: LocalCluster, key: str) -> tuple[ClusterNode, ClusterNode]:
    """Migrate ``key``'s slot, keys and all, to another master, as a resharding does."""
    source = cluster.master_of(key)
    masters = [n for n in cluster.nodes if n.running and n.role() == "master"]
    target = next(n for n in masters if n.port != source.port)
    src, dst = source.client(), target.client()
    try:
        slot = int(src.execute_command("CLUSTER KEYSLOT", key))  # type: ignore[no-untyped-call]
        src_id = src.execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
        dst_id = dst.execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)  # type: ignore[no-untyped-call]
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)  # type: ignore[no-untyped-call]
        keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)  # type: ignore[no-untyped-call]
        if keys:
            src.execute_command(  # type: ignore[no-untyped-call]
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
            )
        for node in masters:
            client = node.client()
            try:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)  # type: ignore[no-untyped-call]
            finally:
                client.close()
    finally:
        src.close()
        dst.close()
    return source, target


def test_leases_follow_their_slot_to_another_master(
    redis_cluster_factory: Callable[..., LocalCluster], redis_namespace: str
) -> None:
    cluster = redis_cluster_factory()
    keys = Keys(redis_namespace, "w")
    caps = ConnectionCaps(server=3, per_ip=3)

    async def main() -> None:
        limits = RedisLimits(cluster.url(), namespace=redis_namespace, worker_id="w", spare_slots=0)
        await limits.start()
        try:
            assert await limits.leases.admit("a", IP, caps) is None
            assert await limits.bandwidth.reserve([Bucket("server", 10**6)], 1000) >= 0
            source, target = await asyncio.to_thread(move_slot, cluster, keys.server)
            # The lease channel is still connected to the old master: MOVED.
            assert await limits.leases.admit("b", IP, caps) is None
            assert await limits.leases.admit("c", IP, caps) is None
            assert await limits.leases.admit("d", IP, caps) is Refusal.SERVER_FULL
            await limits.leases.release("a")
            assert await limits.leases.admit("e", IP, caps) is None
            assert limits.stats().healthy
            on_target = target.client()
            try:
                members = on_target.zrange(keys.server, 0, -1)
            finally:
                on_target.close()
            assert sorted(members) == [b"w/b", b"w/c", b"w/e"]
            assert source.port != target.port
        finally:
            await limits.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_tls_cluster_with_a_password(
    redis_cluster_factory: Callable[..., LocalCluster], redis_namespace: str
) -> None:
    password = "cluster/pw:x@tls"  # quoted in the URL
    cluster = redis_cluster_factory(replicas=0, tls_password=password)
    url = cluster.url()
    assert url.startswith("rediss+cluster://:")
    caps = ConnectionCaps(server=2)

    async def main() -> None:
        limits = RedisLimits(url, namespace=redis_namespace, worker_id="w", spare_slots=0)
        await limits.start()
        try:
            assert await limits.leases.admit("a", IP, caps) is None
            assert await limits.leases.admit("b", IP, caps) is None
            assert await limits.leases.admit("c", IP, caps) is Refusal.SERVER_FULL
            buckets = [Bucket("server", 10**6), Bucket("ip:127.0.0.1", 10**6)]
            assert await limits.bandwidth.reserve(buckets, 1000) >= 0
            assert limits.stats().healthy
            await limits.settled()
            # The supervisor's side, through blocking clients on the same URL.
            counts = await asyncio.to_thread(_counts, url, redis_namespace)
            assert counts["sessions"] == 2
            assert await asyncio.to_thread(release_worker_leases, url, redis_namespace, "w") == 2
            assert (await asyncio.to_thread(_counts, url, redis_namespace))["sessions"] == 0
        finally:
            await limits.close()

    asyncio.run(asyncio.wait_for(main(), 30))

    # A wrong password is a failure like any other: outage mode, no crash.
    async def wrong() -> None:
        bad = url.replace(quote(password, safe=""), "wrong-pw")
        limits = RedisLimits(bad, namespace=redis_namespace, worker_id="w2")
        await limits.start()
        try:
            assert not limits.stats().healthy
            assert await limits.leases.admit("z", IP, caps) is Refusal.UNAVAILABLE
        finally:
            await limits.close()

    asyncio.run(asyncio.wait_for(wrong(), 30))


def _counts(url: str, namespace: str) -> dict[str, Any]:
    connection = sync_client(url, timeout=2.0)
    try:
        return cluster_counts(connection.client, namespace)
    finally:
        connection.close()
