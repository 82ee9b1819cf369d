"""Cluster state in Redis as seen from outside a worker (blocking clients).

The supervisor uses these: it frees a dead worker's leases right after it
reaps it, and ``ftp-cluster status`` reads the cluster-wide counts.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.exceptions

from ftp_cluster.shared.limits.redis.connection import redact, sync_client
from ftp_cluster.shared.limits.redis.schema import RELEASE_WORKER, Keys
from ftp_cluster.shared.limits.redis.spares import SPARE_PREFIX

__all__ = ["cluster_counts", "cluster_sessions", "release_worker_leases"]

logger = logging.getLogger("ftp_cluster.limits")


def release_worker_leases(url: str, namespace: str, worker_id: str) -> int:
    """Free every slot a dead worker held; return how many sessions it had.

    Blocking, for the supervisor right after it reaps a worker. If Redis is
    unreachable this logs a warning and returns 0: the leases then expire
    after ``lease_ttl`` on their own.
    """
    keys = Keys(namespace, worker_id)
    connection = sync_client(url, timeout=1.0)
    try:
        result = connection.client.execute_command(  # type: ignore[no-untyped-call]
            "EVAL", RELEASE_WORKER.source, 1, keys.index, keys.leases, worker_id
        )
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        logger.warning(
            "could not release the leases of worker %s at %s (%s); they expire by themselves",
            worker_id,
            redact(url),
            exc,
        )
        return 0
    finally:
        connection.close()
    return int(result)


def cluster_counts(client: redis.Redis | redis.RedisCluster, namespace: str) -> dict[str, Any]:
    """Live leases cluster-wide, for ``ftp-cluster status`` (blocking client).

    Returns ``{"sessions": n, "workers": n, "ips": {ip: n}, "users": {name: n},
    "spare_slots": n}``: sessions and IPs count sessions only, the slots
    workers hold ahead of need (see :mod:`.spares`) are counted apart.
    Expired leases are not counted. Redis errors propagate to the caller.
    On a Redis Cluster, SCAN visits every master (the lease keys all live in
    one slot, see :class:`.schema.Keys`).
    """
    keys = Keys(namespace)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    ips: dict[str, int] = {}
    users: dict[str, int] = {}
    for key in client.scan_iter(match=f"{_glob_escape(keys.leases)}*", count=500):
        name = key.decode() if isinstance(key, bytes) else str(key)
        kind, _, value = name.removeprefix(keys.leases).partition(":")
        live = _live(client, name, now_ms)[0]
        if live and kind == "ip":
            ips[value] = live
        elif live and kind == "user":
            users[value] = live
    sessions, spares = _live(client, keys.server, now_ms)
    workers = sum(1 for _ in client.scan_iter(match=f"{_glob_escape(keys.workers)}*", count=500))
    return {
        "sessions": sessions,
        "workers": workers,
        "ips": ips,
        "users": users,
        "spare_slots": spares,
    }


def cluster_sessions(client: redis.Redis | redis.RedisCluster, namespace: str) -> int:
    """Live sessions cluster-wide (spare slots not counted), for ``/metrics``.

    Cheaper than :func:`cluster_counts`: the server-wide lease count only.
    Redis errors propagate to the caller.
    """
    seconds, micros = client.time()
    return _live(client, Keys(namespace).server, seconds * 1000 + micros // 1000)[0]


def _live(client: redis.Redis | redis.RedisCluster, key: str, now_ms: int) -> tuple[int, int]:
    """Unexpired sessions and spare slots in one lease count."""
    members = [
        str(m, "utf-8") if isinstance(m, bytes) else str(m)
        for m in client.zrangebyscore(key, f"({now_ms}", "+inf")
    ]
    # Worker ids may hold "/", session ids never do: the last one splits them.
    spares = sum(m.rpartition("/")[2].startswith(SPARE_PREFIX) for m in members)
    return len(members) - spares, spares


def _glob_escape(text: str) -> str:
    """``text`` as a literal prefix in a SCAN MATCH pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
