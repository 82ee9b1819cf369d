"""Keeping the workers alive: crashes, crash loops, hung workers."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from typing import Any

from tests.conftest import RedisServer
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, alive, wait_for


def _greeting(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_killed_worker_is_replaced_and_its_queue_is_kept(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    (old,) = cluster.worker_pids()
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    # While no worker runs, the kernel keeps queueing on the supervisor's
    # socket: these connections must be served by the replacement.
    waiting = [socket.create_connection((cluster.host, cluster.port), timeout=5) for _ in range(5)]
    new = wait_for(lambda: cluster.worker_pids() - {old}, timeout=5)
    assert time.monotonic() - killed < 1.5
    assert len(new) == 1
    for sock in waiting:
        with sock:
            assert _greeting(sock).startswith(b"220")
    cluster.session()
    assert "killed by SIGKILL" in cluster.log()


def test_every_slot_keeps_a_worker(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=3)
    pids = cluster.worker_pids()
    assert len(pids) == 3
    for pid in list(pids)[:2]:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(alive(cluster.worker_pids())) == 3, timeout=5)
    slots = wait_for(lambda: _slots_if_accepting(cluster.status()), timeout=5)
    assert slots == [0, 1, 2]


def _slots_if_accepting(status: dict[str, object]) -> list[int] | None:
    workers = status["workers"]
    assert isinstance(workers, list)
    if len(workers) == 3 and all(w["state"] == "accepting" for w in workers):
        return sorted(w["slot"] for w in workers)
    return None


def test_crash_loop_backs_off_and_says_so(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    killed: set[int] = set()
    # Kill each new worker as soon as it appears: five quick exits in a row.
    for _ in range(5):
        pid = wait_for(lambda: next(iter(cluster.worker_pids() - killed), None), timeout=5)
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
    wait_for(lambda: "CRASH LOOP" in cluster.log(), timeout=5)
    assert re.search(
        r"CRASH LOOP: slot 0's worker exited within 1 s of starting 5 times", cluster.log()
    )
    assert "next start in 1 s" in cluster.log()
    noticed = time.monotonic()
    wait_for(lambda: cluster.worker_pids() - killed, timeout=5)
    assert time.monotonic() - noticed > 0.5  # backed off rather than restarted at once
    cluster.session()


def test_hung_worker_is_killed_and_replaced(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1, config="[server]\nworker_timeout = 1.5\n")
    (old,) = cluster.worker_pids()
    os.kill(old, signal.SIGSTOP)  # alive but silent, like a worker stuck in a loop
    stopped = time.monotonic()
    new = wait_for(lambda: cluster.worker_pids() - {old}, timeout=8)
    assert 1.0 < time.monotonic() - stopped < 6
    assert len(new) == 1
    assert not alive({old})
    assert "sent no heartbeat for 2 s: killing it" in cluster.log()
    wait_for(lambda: cluster.accepting_pids() == new, timeout=5)
    cluster.session()


def test_workers_die_with_the_supervisor(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=2)
    workers = cluster.worker_pids()
    assert len(workers) == 2
    cluster.process.kill()
    cluster.wait(5)
    wait_for(lambda: not alive(workers), timeout=5)


def test_leases_of_a_killed_worker_are_freed_at_once(
    start_cluster: StartCluster, redis_server: RedisServer, redis_namespace: str
) -> None:
    config = f'[redis]\nnamespace = "{redis_namespace}"\nlease_ttl = 60\n'
    cluster = start_cluster(workers=1, config=config, args=["--redis-url", redis_server.url])
    clients = [cluster.client() for _ in range(3)]
    status = wait_for(lambda: _cluster_sessions(cluster, 3), timeout=5)
    assert status["redis"]["state"] == "up"
    (worker,) = cluster.worker_pids()
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: _cluster_sessions(cluster, 0), timeout=5)
    assert time.monotonic() - killed < 2  # not the 60 s lease_ttl
    assert "released 3 lease(s)" in cluster.log()
    for ftp in clients:
        ftp.close()


def _cluster_sessions(cluster: Cluster, expected: int) -> dict[str, Any] | None:
    status = cluster.status()
    counts = status["redis"].get("cluster") or {}
    return status if counts.get("sessions") == expected else None
