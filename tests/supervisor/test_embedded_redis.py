"""The private redis-server of a cluster given no Redis URL."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import alive, cli, wait_for


def test_started_for_several_workers_and_stopped_with_the_cluster(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(workers=2)
    (redis_pid,) = cluster.redis_pids()
    status = cluster.status()
    redis = status["redis"]
    assert redis["embedded"] is True
    assert redis["url"].startswith("unix://")
    assert redis["state"] == "up"
    socket_path = Path(redis["url"].removeprefix("unix://"))
    assert socket_path.exists()
    assert socket_path.parent.stat().st_mode & 0o077 == 0  # a private directory
    assert psutil.Process(redis_pid).net_connections(kind="tcp") == []  # no TCP port
    cluster.session()
    workers = cluster.worker_pids()
    cluster.send(signal.SIGTERM)
    assert cluster.wait(15) == 0
    assert not alive({redis_pid} | workers)
    assert not socket_path.parent.exists()


def test_not_started_for_one_worker(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    assert cluster.redis_pids() == set()
    assert cluster.status()["redis"]["url"] is None


def test_nothing_survives_kill_9_of_the_supervisor(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=3)
    children = cluster.worker_pids() | cluster.redis_pids()
    assert len(children) == 4
    cluster.process.kill()
    cluster.wait(5)
    wait_for(lambda: not alive(children), timeout=5)


def test_a_crashed_redis_is_restarted_on_the_same_socket(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=2)
    (old,) = cluster.redis_pids()
    url = cluster.status()["redis"]["url"]
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: cluster.redis_pids() - {old}, timeout=5)
    assert len(new) == 1
    wait_for(lambda: cluster.status()["redis"].get("state") == "up", timeout=5)
    assert cluster.status()["redis"]["url"] == url
    cluster.session()


def test_missing_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH without redis-server
    done = cli(
        "start", "--workers", "2", "--port", "0", "--pid-file", str(tmp_path / "p.pid"), env=env
    )
    assert done.returncode == 1
    assert "redis-server is not installed" in done.stderr
    assert "apt-get install redis-server" in done.stderr
    assert done.stdout == ""
