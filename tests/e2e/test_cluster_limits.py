"""Limits of a real ``ftp-cluster`` hold across its workers and across hosts.

Every test runs real supervisors (``start_cluster``) against a real Redis and
drives them with ftplib clients. Connection attempts are made concurrently so
that several workers race to admit them; ``status --json`` shows that more
than one worker took the attempts, so a per-process count would have
admitted more than the limit.
"""

from __future__ import annotations

import ftplib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from tests.conftest import RedisServer
from tests.e2e.cluster import (
    CommandTap,
    Download,
    MiB,
    TomlValue,
    assert_stopped_cleanly,
    attempt,
    attempt_many,
    config_toml,
    login_many,
    quit_all,
    refuses_connections,
    start_with_redis,
    status_summary,
    stop_cleanly,
    try_login,
    usable,
    wait_cluster_sessions,
    wait_worker_figures,
    wait_worker_sessions,
)
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

A = TypeVar("A")
B = TypeVar("B")

ALICE: dict[str, TomlValue] = {"login": "alice", "password": "wonderland", "maximum_connections": 2}
ANONYMOUS: dict[str, TomlValue] = {"home_path": "/"}


def busy_workers(per_worker: dict[int, int]) -> int:
    return sum(1 for sessions in per_worker.values() if sessions)


def test_maximum_connections_hold_across_four_workers(
    start_cluster: StartCluster,
    redis_server: RedisServer,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    cap = 8
    config = config_toml({"maximum_connections": cap}, {"namespace": redis_namespace})
    cluster = start_with_redis(start_cluster, redis_server.url, 4, config)

    first = attempt_many(cluster, 3 * cap)
    held += first.admitted
    assert first.count == cap
    assert first.codes() == {"421"}, first.refused
    assert len(wait_worker_sessions(cluster, cap)) == 4
    # One worker's batch may well take every slot; what shows the cap is
    # cluster-wide is that the attempts reached several workers.
    accepted = wait_worker_figures(cluster, "accepted", 3 * cap)
    assert busy_workers(accepted) >= 2, accepted
    wait_worker_figures(cluster, "refused", 2 * cap)
    wait_cluster_sessions(cluster, cap)
    # The admitted sessions stay: nothing was admitted and then dropped.
    assert all(usable(ftp) for ftp in first.admitted)

    quit_all(first.admitted[:3])
    del held[:3]
    second = attempt_many(cluster, 12)
    held += second.admitted
    assert second.count == 3
    assert second.codes() == {"421"}
    wait_cluster_sessions(cluster, cap)

    quit_all(held)
    stop_cleanly(cluster)


def test_user_limit_is_cluster_wide_530_at_login(
    start_cluster: StartCluster,
    redis_server: RedisServer,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    config = config_toml({}, {"namespace": redis_namespace}, [ALICE, ANONYMOUS])
    cluster = start_with_redis(start_cluster, redis_server.url, 4, config)
    sessions = attempt_many(cluster, 8).admitted
    held += sessions
    assert len(sessions) == 8

    replies = login_many(sessions, "alice", "wonderland")
    logged_in = [ftp for ftp, reply in zip(sessions, replies, strict=True) if reply[:3] == "230"]
    refused = [ftp for ftp, reply in zip(sessions, replies, strict=True) if reply[:3] != "230"]
    assert len(logged_in) == 2, replies
    assert {reply[:3] for reply in replies} == {"230", "530"}, replies
    per_worker = wait_worker_sessions(cluster, 8)
    assert busy_workers(per_worker) >= 2, per_worker
    # The user's cap says nothing about other accounts, nor about the connection.
    assert all(try_login(ftp)[:3] == "230" for ftp in refused)

    quit_all(logged_in[:1])
    again = attempt(cluster)
    assert not isinstance(again, str), again
    held.append(again)
    assert try_login(again, "alice", "wonderland")[:3] == "230"
    late = attempt(cluster)
    assert not isinstance(late, str), late
    held.append(late)
    assert try_login(late, "alice", "wonderland")[:3] == "530"

    quit_all(held)
    stop_cleanly(cluster)


def test_per_ip_limit_is_cluster_wide_and_per_address(
    start_cluster: StartCluster,
    redis_server: RedisServer,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    per_ip = 4
    config = config_toml(
        {"maximum_connections": 20, "maximum_connections_per_ip": per_ip},
        {"namespace": redis_namespace},
    )
    cluster = start_with_redis(start_cluster, redis_server.url, 4, config)

    local = attempt_many(cluster, 10, "127.0.0.1")
    held += local.admitted
    assert local.count == per_ip
    assert local.codes() == {"421"}
    # 127.0.0.1 is at its cap; another address is not held back by it.
    foreign = attempt_many(cluster, 10, "127.0.0.2")
    held += foreign.admitted
    assert foreign.count == per_ip
    assert foreign.codes() == {"421"}
    assert "address" in foreign.refused[0]

    wait_worker_sessions(cluster, 2 * per_ip)
    accepted = wait_worker_figures(cluster, "accepted", 20)
    assert busy_workers(accepted) >= 2, accepted
    ips = cluster.status()["redis"]["cluster"]["ips"]
    assert ips == {"127.0.0.1": per_ip, "127.0.0.2": per_ip}

    quit_all(local.admitted[:1])
    more = attempt_many(cluster, 4, "127.0.0.1")
    held += more.admitted
    assert more.count == 1

    quit_all(held)
    stop_cleanly(cluster)


def test_large_caps_admit_on_spare_slots_and_leave_redis_clean(
    start_cluster: StartCluster,
    redis_server: RedisServer,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    """Far below large caps, workers hold spare slots; status and Redis stay exact."""
    config = config_toml(
        {"maximum_connections": 1280, "maximum_connections_per_ip": 1280},
        {"namespace": redis_namespace},
    )
    cluster = start_with_redis(start_cluster, redis_server.url, 2, config)
    first = attempt_many(cluster, 6)
    held += first.admitted
    assert first.count == 6
    spares = 0
    for _ in range(30):  # churn beside the held sessions: spares are asked for, then used
        ftp = attempt(cluster)
        assert isinstance(ftp, ftplib.FTP), ftp
        assert try_login(ftp).startswith("230")
        quit_all([ftp])
        # Idle spares go back within seconds: look while the churn uses them.
        spares = cluster.status()["redis"]["cluster"]["spare_slots"]
        assert spares <= 1280 // 16  # two workers, 1/32 of the cap each
        if spares:
            break
    assert spares >= 1
    wait_cluster_sessions(cluster, 6)
    assert cluster.status()["redis"]["cluster"]["ips"] == {"127.0.0.1": 6}

    quit_all(held)
    wait_cluster_sessions(cluster, 0)
    stop_cleanly(cluster)
    # Spares are leases of their worker: a clean stop gives them back too.
    assert redis_server.client().keys(f"{{{redis_namespace}}}:conn:*") == []


def test_two_hosts_sharing_redis_and_namespace_share_limits(
    start_cluster: StartCluster,
    redis_server: RedisServer,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    cap = 6
    shared = config_toml(
        {"maximum_connections": cap}, {"namespace": redis_namespace}, [ALICE, ANONYMOUS]
    )
    apart = config_toml({"maximum_connections": cap}, {"namespace": f"{redis_namespace}-apart"})
    host_a = start_with_redis(start_cluster, redis_server.url, 2, shared)
    host_b = start_with_redis(start_cluster, redis_server.url, 2, shared)
    other = start_with_redis(start_cluster, redis_server.url, 2, apart)
    assert len({host_a.port, host_b.port, other.port}) == 3

    # Five attempts on each host at once: the cap of six is split between them.
    on_a, on_b = _concurrently(lambda: attempt_many(host_a, 5), lambda: attempt_many(host_b, 5))
    held += on_a.admitted + on_b.admitted
    assert on_a.count + on_b.count == cap
    assert on_a.admitted and on_b.admitted
    assert on_a.codes() | on_b.codes() == {"421"}
    wait_cluster_sessions(host_a, cap)

    # Another namespace on the same Redis counts its own sessions only.
    separate = attempt_many(other, cap + 2)
    held += separate.admitted
    assert separate.count == cap
    wait_cluster_sessions(other, cap)
    wait_cluster_sessions(host_b, cap)

    # The per-user cap too: two logins in all, whichever host they reach.
    quit_all(held)
    held.clear()
    sessions_a = attempt_many(host_a, 3).admitted
    sessions_b = attempt_many(host_b, 3).admitted
    held += sessions_a + sessions_b
    assert len(held) == 6
    replies = login_many(held, "alice", "wonderland")
    assert sorted(reply[:3] for reply in replies) == ["230"] * 2 + ["530"] * 4, replies
    users = host_b.status()["redis"]["cluster"]["users"]
    assert users == {"alice": 2}

    quit_all(held)
    for cluster in (host_a, host_b, other):
        stop_cleanly(cluster)


def _concurrently(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        one, two = pool.submit(first), pool.submit(second)
        return one.result(), two.result()


def test_download_limit_is_cluster_wide_over_parallel_retrs(
    start_cluster: StartCluster,
    redis_factory: Callable[[], RedisServer],
    held: list[ftplib.FTP],
) -> None:
    rate = 4 * MiB
    files, size = 8, 2 * MiB  # 16 MiB at 4 MiB/s: about 4 s
    redis = redis_factory()  # private: every command it sees is this cluster's
    config = config_toml({"write_speed_limit": rate}, {"namespace": "download"})
    cluster = start_with_redis(start_cluster, redis.url, 4, config)
    for index in range(files):
        (cluster.root / f"f{index}").write_bytes(os.urandom(size))

    tap = CommandTap(redis.port)
    try:
        began = time.time()
        sessions = attempt_many(cluster, files).admitted
        held += sessions
        assert len(sessions) == files
        assert {reply[:3] for reply in login_many(sessions, "anonymous")} == {"230"}
        downloads = [Download(ftp, f"f{i}").start() for i, ftp in enumerate(sessions)]
        for download in downloads:
            download.join(timeout=30)
        quit_all(sessions)
        ended = time.time()
    finally:
        tap.close()

    assert all(d.received == size and d.reply[:3] == "226" for d in downloads)
    first = min(d.first_byte for d in downloads if d.first_byte is not None)
    last = max(d.last_byte for d in downloads if d.last_byte is not None)
    measured = files * size / (last - first)
    assert 0.9 * rate <= measured <= 1.1 * rate, f"{measured / MiB:.2f} MiB/s"

    commands = tap.between(began, ended)
    per_mib = len(commands) / (files * size / MiB)
    print(f"{measured / MiB:.3f} MiB/s over {last - first:.2f} s; {per_mib:.2f} commands/MiB")
    assert "EVALSHA" in commands
    assert per_mib <= 16, f"{len(commands)} commands for {files * size / MiB:.0f} MiB"

    # The transfers really ran in several processes sharing the one bucket.
    def moved() -> dict[int, int] | None:
        workers = cluster.status()["workers"]
        bytes_downloaded = {int(w["pid"]): int(w["bytes_downloaded"]) for w in workers}
        return bytes_downloaded if sum(bytes_downloaded.values()) >= files * size else None

    per_worker = wait_for(moved, timeout=5, interval=0.2)
    assert busy_workers(per_worker) >= 2, per_worker
    stop_cleanly(cluster)


def test_killed_worker_frees_its_leases_and_is_replaced(
    start_cluster: StartCluster,
    redis_server: RedisServer,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    cap = 6
    # A lease_ttl far beyond the test: only the supervisor's release can free them.
    config = config_toml(
        {"maximum_connections": cap}, {"namespace": redis_namespace, "lease_ttl": 60}
    )
    cluster = start_with_redis(start_cluster, redis_server.url, 2, config)
    first = attempt_many(cluster, cap)
    held += first.admitted
    assert first.count == cap
    per_worker = wait_worker_sessions(cluster, cap)
    victim = max(per_worker, key=lambda pid: per_worker[pid])
    lost = per_worker[victim]
    assert isinstance(attempt(cluster), str)  # full

    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    readmitted: list[ftplib.FTP] = []
    while len(readmitted) < lost and time.monotonic() - killed < 10:
        result = attempt(cluster)
        if isinstance(result, str):
            assert result[:3] == "421", result
            time.sleep(0.02)
        else:
            readmitted.append(result)
            held.append(result)
    freed_after = time.monotonic() - killed
    print(f"{lost} leases of the killed worker re-admitted after {freed_after:.3f} s")
    assert len(readmitted) == lost
    assert freed_after < 2.0, f"leases freed after {freed_after:.2f} s"

    # Only the dead worker's slots were freed: the survivors still count.
    survivors = [ftp for ftp in first.admitted if usable(ftp)]
    assert len(survivors) == cap - lost
    extra = attempt(cluster)
    assert isinstance(extra, str) and extra[:3] == "421", extra
    wait_cluster_sessions(cluster, cap)

    replacement = wait_for(lambda: cluster.accepting_pids() - set(per_worker), 5, 0.1)
    assert len(replacement) == 1
    (new_pid,) = replacement
    served = _replacement_serves(cluster, new_pid, held)
    assert served, f"replacement {new_pid} served nothing: {status_summary(cluster.status())}"

    quit_all(held)
    stop_cleanly(cluster)


def _replacement_serves(cluster: Cluster, pid: int, held: list[ftplib.FTP]) -> bool:
    """Whether ``pid`` gets sessions; the kernel picks the slot, so try a few rounds.

    The rounds are spaced out: on a loaded machine a worker that has just
    booted may see its first Redis calls time out and refuse (421) until its
    probe finds Redis again, half a second later.
    """
    refusals: list[str] = []
    for _ in range(10):
        total = sum(1 for ftp in held if ftp.sock is not None and usable(ftp))
        if wait_worker_sessions(cluster, total).get(pid):
            return True
        quit_all(held)
        held.clear()
        batch = attempt_many(cluster, 6)
        held += batch.admitted
        refusals += batch.refused
        time.sleep(0.3)
    print(f"refusals while waiting for the replacement: {refusals}")
    return False


def test_sigterm_lets_a_running_download_finish(
    start_cluster: StartCluster,
    redis_server: RedisServer,
    redis_namespace: str,
    held: list[ftplib.FTP],
) -> None:
    rate = 512 * 1024
    config = config_toml({"write_speed_limit": rate}, {"namespace": redis_namespace})
    cluster = start_with_redis(start_cluster, redis_server.url, 2, config)
    payload = os.urandom(2 * rate)  # about 2 s
    (cluster.root / "big").write_bytes(payload)
    busy, idle = attempt_many(cluster, 2).admitted
    held += [busy, idle]
    assert try_login(busy)[:3] == try_login(idle)[:3] == "230"

    download = Download(busy, "big").start(keep_data=True)
    wait_for(lambda: download.received > 0, timeout=5)
    cluster.children()
    cluster.send(signal.SIGTERM)
    stopped = time.monotonic()

    wait_for(lambda: refuses_connections(cluster.host, cluster.port), timeout=2, interval=0.05)
    refused_after = time.monotonic() - stopped
    print(f"connections refused {refused_after:.3f} s after SIGTERM")
    assert download.thread is not None and download.thread.is_alive()
    # The idle session is told at once; the busy one keeps transferring.
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        idle.getresp()

    # Still stopping while the transfer runs: no new connections, no early exit.
    assert download.thread.is_alive()
    assert refuses_connections(cluster.host, cluster.port)
    assert cluster.process.poll() is None
    download.join(timeout=20)
    assert download.reply[:3] == "226"
    assert download.data is not None and download.data.getvalue() == payload
    assert download.last_byte is not None and download.last_byte - stopped > 0.5
    assert refused_after < 1.0
    assert_stopped_cleanly(cluster)
