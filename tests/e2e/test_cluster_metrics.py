"""``GET /metrics`` of a real 2-worker cluster agrees with what real clients did.

Uploads and downloads of known sizes go through fresh ftplib sessions (the
kernel spreads them over both workers); the counters must grow by exactly
that. A worker killed with SIGKILL must not make any counter go backwards.
"""

from __future__ import annotations

import ftplib
import io
import os
import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import config_toml, quit_all, refused_login
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

PASSWORD = "metrics-secret-8086"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def metrics_port(cluster: Cluster) -> int:
    match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", cluster.log())
    assert match, cluster.log()
    return int(match[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (found, have), value in samples.items() if found == name and wanted <= have
    )


def per_worker(samples: Samples, name: str, **labels: str) -> dict[str, float]:
    wanted = set(labels.items())
    return {
        dict(have)["worker"]: value
        for (found, have), value in samples.items()
        if found == name and wanted <= have
    }


def grew(before: Samples, after: Samples) -> Mapping[str, float]:
    keys = {
        "uploads": ("ftp_cluster_transfers_total", {"direction": "upload", "result": "ok"}),
        "downloads": ("ftp_cluster_transfers_total", {"direction": "download", "result": "ok"}),
        "up_bytes": ("ftp_cluster_transfer_bytes_total", {"direction": "upload"}),
        "down_bytes": ("ftp_cluster_transfer_bytes_total", {"direction": "download"}),
        "up_seconds": ("ftp_cluster_transfer_seconds_count", {"direction": "upload"}),
        "down_seconds": ("ftp_cluster_transfer_seconds_count", {"direction": "download"}),
        "logins": ("ftp_cluster_logins_total", {"result": "ok"}),
        "bad_password": ("ftp_cluster_logins_total", {"result": "bad_password"}),
        "accepted": ("ftp_cluster_connections_total", {"result": "accepted"}),
    }
    return {
        key: total(after, name, **labels) - total(before, name, **labels)
        for key, (name, labels) in keys.items()
    }


def session(cluster: Cluster) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=10)
    ftp.connect(cluster.host, cluster.port)
    ftp.login("alice", PASSWORD)
    return ftp


def run_clients(cluster: Cluster) -> dict[str, int]:
    """Uploads, downloads and a failed login of known sizes; how each figure must grow."""
    sizes = [1, 1000, 65536, 300_000, 1 << 20, 7]
    for index, size in enumerate(sizes):  # one session each: both workers get some
        ftp = session(cluster)
        ftp.storbinary(f"STOR f{index}", io.BytesIO(os.urandom(size)))
        ftp.quit()
    downloads = [0, 2, 4]
    for index in downloads:
        ftp = session(cluster)
        out = io.BytesIO()
        ftp.retrbinary(f"RETR f{index}", out.write)
        assert len(out.getvalue()) == sizes[index]
        ftp.quit()
    refused_login(cluster, "alice", "not-the-password")
    return {
        "uploads": len(sizes),
        "downloads": len(downloads),
        "up_bytes": sum(sizes),
        "down_bytes": sum(sizes[i] for i in downloads),
        "up_seconds": len(sizes),
        "down_seconds": len(downloads),
        "logins": len(sizes) + len(downloads),
        "bad_password": 1,
        "accepted": len(sizes) + len(downloads) + 1,
    }


def test_counters_match_the_transfers_and_survive_a_killed_worker(
    start_cluster: StartCluster,
) -> None:
    port = free_port()
    config = (
        config_toml(
            users=[{"login": "alice", "password": PASSWORD, "home_path": "/"}],
        )
        + f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    cluster = start_cluster(workers=2, config=config)
    assert metrics_port(cluster) == port
    before = scrape(port)
    for name in (
        "ftp_cluster_logins_total",
        "ftp_cluster_transfers_total",
        "ftp_cluster_tls_handshakes_total",
        "ftp_cluster_redis_commands_total",
    ):
        assert any(found == name for found, _ in before), name
    results = {dict(labels).get("result") for found, labels in before if "logins" in found}
    assert {"ok", "bad_password", "unknown_user", "limit", "banned", "tls_required"} <= results
    expected = run_clients(cluster)
    wait_for(lambda: grew(before, scrape(port)) == expected, timeout=10, interval=0.3)
    held = [session(cluster), session(cluster)]
    wait_for(lambda: total(scrape(port), "ftp_cluster_sessions") == 2, timeout=10, interval=0.3)
    after = scrape(port)
    expected["logins"] += 2
    expected["accepted"] += 2
    assert grew(before, after) == expected  # exactly: nothing more either
    assert total(after, "ftp_cluster_workers") == 2
    assert total(after, "ftp_cluster_redis_up") == 1  # the embedded Redis of 2 workers
    assert total(after, "ftp_cluster_cluster_sessions") == 2
    assert total(after, "ftp_cluster_redis_commands_total") > 0
    busy = per_worker(after, "ftp_cluster_transfers_total", result="ok")
    assert set(busy) == {"0", "1"}

    victim = max(cluster.worker_pids())
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: total(scrape(port), "ftp_cluster_worker_restarts_total") == 1,
        timeout=15,
        interval=0.3,
    )
    wait_for(lambda: total(scrape(port), "ftp_cluster_workers") == 2, timeout=15, interval=0.3)
    later = scrape(port)
    for (name, labels), value in after.items():
        if name.endswith(("_total", "_count", "_sum", "_bucket")):
            assert later.get((name, labels), 0) >= value, (name, dict(labels))
    assert grew(before, later) == expected
    quit_all(held)

    # A reload replaces both workers; each sends its final totals as it exits,
    # so an upload just before it (no heartbeat since) is counted, and a
    # reload is no restart.
    old = cluster.worker_pids()
    ftp = session(cluster)
    ftp.storbinary("STOR last", io.BytesIO(b"L" * 4096))
    ftp.quit()
    expected["uploads"] += 1
    expected["up_bytes"] += 4096
    expected["up_seconds"] += 1
    expected["logins"] += 1
    expected["accepted"] += 1
    done = cli("reload", "--pid-file", str(cluster.pid_file))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not cluster.worker_pids() & old, timeout=20, interval=0.3)
    wait_for(lambda: total(scrape(port), "ftp_cluster_workers") == 2, timeout=15, interval=0.3)
    reloaded = scrape(port)
    assert grew(before, reloaded) == expected
    assert total(reloaded, "ftp_cluster_worker_restarts_total") == 1


def test_only_get_metrics_is_served(start_cluster: StartCluster) -> None:
    port = free_port()
    cluster = start_cluster(workers=1, config=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    assert cluster.workers == 1
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError, match="405"):
        urllib.request.urlopen(request, timeout=10)
    samples = scrape(port)
    assert total(samples, "ftp_cluster_workers") == 1
    assert total(samples, "ftp_cluster_redis_up") == 0  # one worker: no Redis at all
    # A client that connects and sends nothing does not hold the supervisor up.
    with socket.create_connection(("127.0.0.1", port)):
        cluster.session()
        assert total(scrape(port), "ftp_cluster_logins_total", result="ok") >= 0
