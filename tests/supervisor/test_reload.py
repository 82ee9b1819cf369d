"""SIGHUP / ``ftp-cluster reload``: no failed connection, broken configs refused."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, alive, cli, wait_for


@dataclass
class Load:
    """Counts of a client loop running next to the test."""

    sessions: int = 0
    failures: list[str] = field(default_factory=list)


@contextmanager
def session_loop(cluster: Cluster, clients: int = 4, limit: float = 60) -> Iterator[Load]:
    """Connect / login / NOOP / quit in ``clients`` threads until the block ends."""
    load = Load()
    stop = threading.Event()
    lock = threading.Lock()

    def run() -> None:
        deadline = time.monotonic() + limit
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                cluster.session()
            except Exception as exc:  # every failure is a test failure, keep counting
                with lock:
                    load.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    load.sessions += 1

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


def _generations(cluster: Cluster) -> list[int]:
    workers = cluster.status()["workers"]
    return sorted(w["generation"] for w in workers if w["state"] == "accepting")


def test_sighup_replaces_every_worker_without_a_failed_connection(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(workers=3, config="[server]\ngraceful_timeout = 5\n")
    before = cluster.worker_pids()
    with session_loop(cluster) as load:
        time.sleep(0.3)
        cluster.send(signal.SIGHUP)
        started = time.monotonic()
        wait_for(lambda: _generations(cluster) == [1, 1, 1], timeout=15)
        took = time.monotonic() - started
        wait_for(lambda: not alive(before), timeout=10)
        cluster.send(signal.SIGHUP)  # twice, to be sure it was no accident
        wait_for(lambda: _generations(cluster) == [2, 2, 2], timeout=15)
        time.sleep(0.3)
    assert load.failures == []
    assert load.sessions > 20
    assert took < 15
    assert not cluster.worker_pids() & before
    assert "reload complete" in cluster.log()


def test_reload_command_reports_success(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1, config="[server]\nidle_timeout = 60\n")
    done = cli("reload", "--pid-file", str(cluster.pid_file))
    assert done.returncode == 0, done.stderr
    assert "reloaded" in done.stdout
    wait_for(lambda: _generations(cluster) == [1], timeout=15)


def test_broken_config_keeps_the_old_workers(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=2, config="[server]\nidle_timeout = 60\n")
    before = cluster.worker_pids()
    config = cluster.pid_file.parent / "ftp.toml"
    config.write_text("[server]\nidle_timeout = 60\nworkers = -1\n")
    done = cli("reload", "--pid-file", str(cluster.pid_file))
    assert done.returncode == 1
    assert f"{config}, line 3: server.workers" in done.stderr
    assert "reload failed" in cluster.log()
    time.sleep(1.5)  # nothing may be replaced in the background either
    assert cluster.worker_pids() == before
    assert _generations(cluster) == [0, 0]
    cluster.session()
    # SIGHUP with the same broken file: logged, nothing else happens.
    cluster.send(signal.SIGHUP)
    wait_for(lambda: cluster.log().count("reload failed") == 2, timeout=5)
    assert cluster.worker_pids() == before
    # Once fixed, the reload goes through.
    config.write_text("[server]\nidle_timeout = 60\n")
    assert cli("reload", "--pid-file", str(cluster.pid_file)).returncode == 0
    wait_for(lambda: _generations(cluster) == [1, 1], timeout=15)  # failures do not count


def test_reload_applies_the_file_but_keeps_command_line_flags(
    start_cluster: StartCluster,
) -> None:
    pinned = start_cluster(workers=1, config="[server]\nworkers = 1\n")
    unpinned = start_cluster(workers=None, config="[server]\nworkers = 1\n")
    for cluster in (pinned, unpinned):
        (cluster.pid_file.parent / "ftp.toml").write_text("[server]\nworkers = 3\n")
        assert cli("reload", "--pid-file", str(cluster.pid_file)).returncode == 0
    wait_for(lambda: len(unpinned.accepting_pids()) == 3, timeout=15)
    assert len(pinned.accepting_pids()) == 1  # --workers 1 still wins over the file
