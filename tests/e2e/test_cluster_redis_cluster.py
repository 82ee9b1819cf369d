"""A real ``ftp-cluster`` on a real Redis Cluster (``redis+cluster://``).

The cluster has three masters with a replica each (``tests/redis_cluster.py``).
The limits must hold cluster-wide exactly as on one Redis, the supervisor's
side (releasing a dead worker's leases, ``status`` counts) must work there
too, and killing the master that serves the lease keys during a login loop
must neither crash nor hang anything: its replica takes over, logins go on
(with the outage rules applying for the second or two it takes), and the
counts are exact afterwards. Bans reach every worker of every host through
the cluster's pub/sub.
"""

from __future__ import annotations

import ftplib
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from tests.e2e.cluster import (
    TomlValue,
    attempt,
    attempt_many,
    config_toml,
    login_many,
    quit_all,
    start_with_redis,
    stop_cleanly,
    try_login,
    wait_cluster_sessions,
    wait_worker_sessions,
)
from tests.e2e.test_cluster_defender import BAD, GOOD
from tests.e2e.test_cluster_defender import _bans as bans_of
from tests.e2e.test_cluster_defender import _config as defender_config
from tests.e2e.test_cluster_defender import _guess as guess
from tests.redis_cluster import LocalCluster
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import alive, cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

ALICE: dict[str, TomlValue] = {
    "login": "alice",
    "password": "cluster-rabbit-hole",
    "maximum_connections": 2,
}
ANONYMOUS: dict[str, TomlValue] = {"home_path": "/"}


def unbraced(key: bytes) -> str:
    return key.decode().replace("{", "").replace("}", "")


def test_limits_and_supervisor_on_a_redis_cluster(
    start_cluster: StartCluster,
    redis_cluster: LocalCluster,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    cap = 6
    config = config_toml(
        {"maximum_connections": cap}, {"namespace": redis_namespace}, [ALICE, ANONYMOUS]
    )
    cluster = start_with_redis(start_cluster, redis_cluster.url(), 4, config)

    first = attempt_many(cluster, 3 * cap)
    held += first.admitted
    assert first.count == cap, first.refused
    assert first.codes() == {"421"}
    wait_cluster_sessions(cluster, cap)  # status reads the counts off the cluster
    replies = login_many(first.admitted[:4], "alice", "cluster-rabbit-hole")
    assert sorted(reply[:3] for reply in replies) == ["230", "230", "530", "530"], replies
    assert cluster.status()["redis"]["cluster"]["users"] == {"alice": 2}

    # Every key of the cluster's state begins with the namespace, braces aside,
    # and the lease keys all hash to one slot.
    client = redis_cluster.client()
    try:
        keys = list(client.scan_iter(match=f"*{redis_namespace}*", count=1000))
        assert keys
        assert all(unbraced(key).startswith(f"{redis_namespace}:") for key in keys), keys
        slots = {client.keyslot(key) for key in keys}  # type: ignore[no-untyped-call]
        assert len(slots) == 1, slots
    finally:
        client.close()

    # A killed worker's leases are released by the supervisor at once.
    per_worker = wait_worker_sessions(cluster, cap)
    victim, lost = max(per_worker.items(), key=lambda item: item[1])
    os.kill(victim, signal.SIGKILL)
    wait_cluster_sessions(cluster, cap - lost, timeout=10)
    again = attempt(cluster)
    assert isinstance(again, ftplib.FTP), again
    held.append(again)
    wait_cluster_sessions(cluster, cap - lost + 1, timeout=10)

    quit_all(held)
    held.clear()
    wait_cluster_sessions(cluster, 0, timeout=10)
    stop_cleanly(cluster)


class LoginLoop(threading.Thread):
    """Logs in and out, one after the other, at most ``limit`` times or ``seconds``."""

    def __init__(self, cluster_port: int, limit: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self._port = cluster_port
        self._limit = limit
        self._deadline = time.monotonic() + seconds
        self.outcomes: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        for _ in range(self._limit):
            if self.stop.is_set() or time.monotonic() > self._deadline:
                return
            self.outcomes.append((time.monotonic(), self._once()))
            time.sleep(0.01)  # refusals are instant: keep the count for the whole failover

    def _once(self) -> str:
        try:
            with ftplib.FTP(timeout=5) as ftp:
                ftp.connect("127.0.0.1", self._port)
                reply = try_login(ftp)
                if reply.startswith("230"):
                    ftp.quit()
                return reply[:3]
        except ftplib.error_temp as refusal:  # 421 at connect: the outage rules
            return str(refusal)[:3]
        except (OSError, EOFError) as exc:
            return type(exc).__name__


def test_a_master_killed_during_a_login_loop(
    start_cluster: StartCluster,
    redis_cluster_factory: Callable[..., LocalCluster],
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    redis = redis_cluster_factory()
    config = config_toml(
        {"maximum_connections": 50, "maximum_connections_per_ip": 50},
        {"namespace": redis_namespace, "on_failure": "closed"},
        [ANONYMOUS],
    )
    cluster = start_with_redis(start_cluster, redis.url(), 2, config)
    workers = cluster.worker_pids()
    kept = attempt_many(cluster, 2).admitted  # sessions that live through the failover
    held += kept
    assert len(kept) == 2
    wait_cluster_sessions(cluster, 2)

    loop = LoginLoop(cluster.port, limit=3000, seconds=25)
    loop.start()
    wait_for(lambda: len(loop.outcomes) >= 20, 10)
    master = redis.master_of(f"{{{redis_namespace}}}:conn:server")
    killed_at = time.monotonic()
    master.kill()
    # A replica takes the dead master's slots, and the loop logs in again.
    try:
        wait_for(lambda: any(t > killed_at + 0.5 and o == "230" for t, o in loop.outcomes[-5:]), 20)
    except AssertionError:
        tail = [(round(t - killed_at, 2), o) for t, o in loop.outcomes[-30:]]
        log = cluster.log()[-3000:]
        raise AssertionError(f"no login after the failover: {tail}\n{log}") from None
    promoted = redis.master_of(f"{{{redis_namespace}}}:conn:server")
    assert promoted.port != master.port and promoted.role() == "master"
    recovered = len(loop.outcomes)
    wait_for(lambda: len(loop.outcomes) >= recovered + 20, 10)
    loop.stop.set()
    loop.join(10)

    before = [o for t, o in loop.outcomes if t < killed_at]
    after = [o for t, o in loop.outcomes if t > killed_at]
    assert set(before) == {"230"}, before
    # While the slot had no master the workers refused new sessions (closed
    # mode: 421) and nothing else went wrong; then every login succeeded.
    assert set(after) <= {"230", "421"}, after
    assert after[-20:] == ["230"] * 20, after[-20:]
    assert alive(workers) == workers  # nothing crashed
    log = cluster.log()
    assert "Traceback" not in log
    if "is unreachable" in log:
        assert "is reachable again" in log
    # The sessions held all along are counted again on the promoted master.
    assert all(ftp.voidcmd("NOOP").startswith("200") for ftp in kept)
    wait_cluster_sessions(cluster, 2, timeout=10)

    quit_all(held)
    held.clear()
    wait_cluster_sessions(cluster, 0, timeout=10)
    stop_cleanly(cluster)


def test_bans_are_shared_through_a_redis_cluster(
    start_cluster: StartCluster, redis_cluster: LocalCluster, redis_namespace: str
) -> None:
    config = defender_config(redis_namespace)
    one = start_with_redis(start_cluster, redis_cluster.url(), 2, config)
    two = start_with_redis(start_cluster, redis_cluster.url(), 2, config)
    replies = [guess(one) for _ in range(15)]
    assert all(reply.startswith("530") for reply in replies[:14]), replies
    # The ban reaches the other cluster through the cluster's pub/sub.
    wait_for(lambda: guess(two).startswith("421"), 5, interval=0.1)
    assert [ban["ip"] for ban in bans_of(two)] == [BAD]
    ftp = attempt(two, GOOD)  # the good client is not banned
    assert isinstance(ftp, ftplib.FTP), ftp
    quit_all([ftp])

    done = cli("bans", "remove", BAD, "--pid-file", str(one.pid_file))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: guess(two).startswith("530"), 5, interval=0.1)
    assert bans_of(one) == []
    stop_cleanly(one)
    stop_cleanly(two)
