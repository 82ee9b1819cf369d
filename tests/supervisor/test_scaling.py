"""SIGTTIN / SIGTTOU: one slot more or less, without a refused connection."""

from __future__ import annotations

import os
import signal
import socket
import time

from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, alive, wait_for
from tests.supervisor.test_reload import session_loop


def _slots(cluster: Cluster) -> list[int]:
    workers = cluster.status()["workers"]
    return sorted(w["slot"] for w in workers if w["state"] == "accepting")


def test_ttin_adds_and_ttou_removes_the_top_slot(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=2)
    cluster.send(signal.SIGTTIN)
    wait_for(lambda: _slots(cluster) == [0, 1, 2], timeout=10)
    top = {w["pid"] for w in cluster.status()["workers"] if w["slot"] == 2}
    cluster.send(signal.SIGTTOU)
    wait_for(lambda: _slots(cluster) == [0, 1], timeout=10)
    wait_for(lambda: not alive(top), timeout=10)
    assert "slot 2 removed" in cluster.log()
    assert cluster.status()["target_workers"] == 2


def test_never_below_one_worker(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    (only,) = cluster.worker_pids()
    cluster.send(signal.SIGTTOU)
    time.sleep(1)
    assert cluster.worker_pids() == {only}
    cluster.session()


def _wait_removed(cluster: Cluster, remaining: int) -> None:
    wait_for(lambda: _slots(cluster) == list(range(remaining)), timeout=15)
    wait_for(lambda: f"{remaining} worker(s) now" in cluster.log(), timeout=15)


def test_removing_slots_under_load_refuses_nothing(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=4)
    with session_loop(cluster, clients=4) as load:
        time.sleep(0.3)
        for remaining in (3, 2):
            cluster.send(signal.SIGTTOU)
            _wait_removed(cluster, remaining)
        cluster.send(signal.SIGTTIN)
        wait_for(lambda: _slots(cluster) == [0, 1, 2], timeout=15)
        time.sleep(0.3)
    assert load.failures == []
    assert load.sessions > 20
    assert "without steering" not in cluster.log()


def test_removed_slot_serves_its_queue_before_closing(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=3)
    (top,) = [w["pid"] for w in cluster.status()["workers"] if w["slot"] == 2]
    os.kill(top, signal.SIGSTOP)  # its accept queue fills while it cannot accept
    try:
        clients = [socket.create_connection((cluster.host, cluster.port), 5) for _ in range(24)]
        cluster.send(signal.SIGTTOU)
        time.sleep(1)  # steering is on; the queue still holds its connections
    finally:
        os.kill(top, signal.SIGCONT)
    queued = 0
    for sock in clients:
        with sock:
            sock.settimeout(10)
            greeting = sock.recv(1024)
            assert greeting.startswith(b"220"), greeting
            sock.sendall(b"QUIT\r\n")
            queued += 1
    assert queued == 24
    wait_for(lambda: _slots(cluster) == [0, 1], timeout=15)
    assert not any(w["slot"] == 2 for w in cluster.status()["workers"])
