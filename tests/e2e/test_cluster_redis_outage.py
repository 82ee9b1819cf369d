"""A cluster's Redis is killed and restarted (empty) under both ``on_failure`` modes.

Each test owns a redis-server on its own port (``redis_factory``), SIGKILLs it
while sessions are held, and starts it again on the same port without data.
The workers must neither crash nor hang, apply their mode during the outage,
and make the cluster-wide counts exact again on their own once Redis is back
(re-registering the leases of the sessions that survived).
"""

from __future__ import annotations

import ftplib
import io
import os
import re
import signal
import time
from collections.abc import Callable

import pytest

from tests.conftest import RedisServer
from tests.e2e.cluster import (
    MiB,
    attempt,
    attempt_many,
    config_toml,
    quit_all,
    start_with_redis,
    stop_cleanly,
    try_login,
    wait_cluster_sessions,
    wait_worker_figures,
    wait_worker_sessions,
)
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

LOST = "is unreachable"
BACK = "is reachable again"
_LOGGED_BY = re.compile(r"\[(\d+)\] ftp_cluster\.limits: .* is unreachable")


def kill(redis: RedisServer) -> None:
    os.kill(redis.pid, signal.SIGKILL)
    redis.stop()  # reaps it


def workers_that_lost_redis(cluster: Cluster) -> set[int]:
    return {int(pid) for pid in _LOGGED_BY.findall(cluster.log())}


def refused_until_every_worker_noticed(cluster: Cluster, workers: int) -> list[str]:
    """Connection attempts during the outage, until every worker has seen it.

    A worker that sent nothing to Redis during the outage has not seen it; see
    ``test_restart_unseen_by_an_idle_worker_refuses_nobody`` for what happens then.
    """
    refusals: list[str] = []
    deadline = time.monotonic() + 5
    while len(workers_that_lost_redis(cluster)) < workers or len(refusals) < 4:
        assert time.monotonic() < deadline, f"outage not seen by every worker: {refusals}"
        result = attempt(cluster)
        assert isinstance(result, str), "a session was admitted while Redis is down"
        refusals.append(result)
    return refusals


def wait_recovered(cluster: Cluster, timeout: float = 10.0) -> float:
    """Seconds until every worker that lost Redis logged that it is back."""
    began = time.monotonic()

    def recovered() -> bool:
        log = cluster.log()
        return log.count(BACK) >= log.count(LOST) > 0

    wait_for(recovered, timeout, interval=0.05)
    return time.monotonic() - began


def admitted_again(cluster: Cluster, timeout: float = 10.0) -> tuple[ftplib.FTP, float]:
    """The first session admitted after an outage, and how long that took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        result = attempt(cluster)
        if not isinstance(result, str):
            return result, time.monotonic() - began
        assert result[:3] == "421", result
        time.sleep(0.05)
    raise AssertionError(f"no session admitted within {timeout} s of Redis's restart")


def test_fail_closed_refuses_new_sessions_and_keeps_running_ones(
    start_cluster: StartCluster,
    redis_factory: Callable[[], RedisServer],
    held: list[ftplib.FTP],
) -> None:
    cap = 4
    redis = redis_factory()
    config = config_toml(
        {"maximum_connections": cap, "write_speed_limit": 8 * MiB},
        {"namespace": "closed", "on_failure": "closed"},
    )
    cluster = start_with_redis(start_cluster, redis.url, 2, config)
    payload = os.urandom(512 * 1024)
    (cluster.root / "data").write_bytes(payload)
    sessions = attempt_many(cluster, 3).admitted
    held += sessions
    assert len(sessions) == 3
    working, leaving, fresh = sessions
    assert try_login(working)[:3] == try_login(leaving)[:3] == "230"
    wait_cluster_sessions(cluster, 3)

    kill(redis)
    refused = refused_until_every_worker_noticed(cluster, 2)
    assert set(refused) == {"421 service temporarily unavailable"}, refused
    # status counts them, each by the worker that refused it.
    wait_worker_figures(cluster, "refused", len(refused))
    # Running sessions go on: listings, throttled downloads, even a login.
    listing: list[str] = []
    assert working.retrlines("LIST", listing.append)[:3] == "226"
    assert len(listing) == 1 and listing[0].endswith(" data"), listing
    out = io.BytesIO()
    assert working.retrbinary("RETR data", out.write)[:3] == "226"
    assert out.getvalue() == payload
    assert try_login(fresh)[:3] == "230"
    leaving.quit()  # ends during the outage: must not count once Redis is back

    redis.start()
    back, back_after = admitted_again(cluster)
    held.append(back)
    assert back_after < 5
    recovered_after = wait_recovered(cluster)
    # Redis came back empty: the survivors were re-registered, the one that left was not.
    wait_cluster_sessions(cluster, 3)
    fill = attempt_many(cluster, 4)
    held += fill.admitted
    assert fill.count == 1
    assert {r.split(" ", 1)[1] for r in fill.refused} == {"too many connections to this server"}
    wait_cluster_sessions(cluster, cap)
    print(
        f"admitted {back_after:.2f} s after restart, all workers back after {recovered_after:.2f}"
    )

    assert cluster.log().count(LOST) == 2, "each worker logs an outage once"
    quit_all(held)
    stop_cleanly(cluster)


def test_fail_open_admits_each_workers_share(
    start_cluster: StartCluster,
    redis_factory: Callable[[], RedisServer],
    held: list[ftplib.FTP],
) -> None:
    cap, workers = 5, 2
    share = -(-cap // workers)  # rounded up: 3 each, 6 in all
    redis = redis_factory()
    config = config_toml({"maximum_connections": cap}, {"namespace": "open", "on_failure": "open"})
    cluster = start_with_redis(start_cluster, redis.url, workers, config)
    before = attempt(cluster)
    assert not isinstance(before, str), before
    held.append(before)

    kill(redis)
    during = attempt_many(cluster, 4 * share)
    held += during.admitted
    total = 1 + during.count
    assert during.admitted, during.refused
    assert total <= workers * share, total
    assert {r[4:] for r in during.refused} == {"too many connections to this server"}
    per_worker = wait_worker_sessions(cluster, total)
    assert max(per_worker.values()) <= share, per_worker
    assert try_login(before)[:3] == "230"
    # Both hold sessions, so both notice the outage (they check every second).
    wait_for(lambda: len(workers_that_lost_redis(cluster)) == workers, timeout=5)

    redis.start()
    recovered_after = wait_recovered(cluster)
    # Every session admitted during the outage is counted again, even above the cap.
    wait_cluster_sessions(cluster, total)
    print(f"{total} sessions during the outage {per_worker}; back after {recovered_after:.2f} s")
    keep = cap - 2
    quit_all(held[keep:])
    del held[keep:]
    wait_cluster_sessions(cluster, keep)
    fill = attempt_many(cluster, 5)
    held += fill.admitted
    assert fill.count == 2
    assert fill.codes() == {"421"}
    wait_cluster_sessions(cluster, cap)

    quit_all(held)
    stop_cleanly(cluster)


def test_restart_unseen_by_an_idle_worker_refuses_nobody(
    start_cluster: StartCluster,
    redis_factory: Callable[[], RedisServer],
) -> None:
    redis = redis_factory()
    # A long lease_ttl: no refresh runs during the test, so the worker stays idle.
    config = config_toml({}, {"namespace": "unseen", "on_failure": "closed", "lease_ttl": 60})
    cluster = start_with_redis(start_cluster, redis.url, 1, config)
    quit_all([_admitted(cluster)])  # the worker now has a pooled connection
    # An uncapped session's release is not waited for: let it land, so that
    # the worker is idle when Redis goes away.
    wait_cluster_sessions(cluster, 0)
    kill(redis)
    redis.start()
    result = attempt(cluster)
    assert not isinstance(result, str), f"refused although Redis is up: {result}"
    quit_all([result])
    stop_cleanly(cluster)


def _admitted(cluster: Cluster) -> ftplib.FTP:
    result = attempt(cluster)
    assert not isinstance(result, str), result
    return result
