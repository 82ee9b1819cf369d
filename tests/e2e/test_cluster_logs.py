"""The server log in JSON and the transfer log of a real cluster, and ``reopen-logs``."""

from __future__ import annotations

import ftplib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import config_toml, refused_login
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

PASSWORD = "json-log-secret-1729"
USERS = [{"login": "alice", "password": PASSWORD, "home_path": "/"}]


def json_lines(cluster: Cluster) -> list[dict[str, Any]]:
    """Every line of the cluster's stderr as a JSON object (fails on any other line)."""
    found = []
    for number, line in enumerate(cluster.log().splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), line
        found.append(entry)
    return found


def test_every_line_is_json_and_one_session_can_be_followed(
    start_cluster: StartCluster,
) -> None:
    config = config_toml(users=USERS) + '[logging]\nformat = "json"\n'
    cluster = start_cluster(workers=2, config=config)
    ftp = ftplib.FTP(timeout=10)
    ftp.connect(cluster.host, cluster.port)
    ftp.login("alice", PASSWORD)
    ftp.storbinary("STOR a.bin", io.BytesIO(b"z" * 4321))
    ftp.quit()
    refused_login(cluster, "mallory", "guessed-password-0")

    def sessions_ended() -> list[dict[str, Any]] | None:
        lines = json_lines(cluster)
        ends = [e for e in lines if e.get("event") in ("quit", "disconnect")]
        return lines if len(ends) >= 2 else None

    lines = wait_for(sessions_ended, timeout=10, interval=0.1)
    for entry in lines:
        for key in ("ts", "level", "event", "message"):
            assert key in entry, entry
        assert entry["ts"].endswith("Z") and "T" in entry["ts"], entry
        time.strptime(entry["ts"][:19], "%Y-%m-%dT%H:%M:%S")
    supervisor = [e for e in lines if "worker" not in e]
    assert any("listening on" in e["message"] for e in supervisor)  # start-up included
    assert {e["worker"] for e in lines if "worker" in e} <= {0, 1}
    login = next(e for e in lines if e["event"] == "login" and e.get("result") == "ok")
    assert (login["user"], login["client_ip"]) == ("alice", "127.0.0.1")
    story = [e for e in lines if e.get("session") == login["session"]]
    assert [e["event"] for e in story] == ["connect", "login", "transfer", "quit"]
    assert len({e["worker"] for e in story}) == 1
    transfer = story[2]
    assert (transfer["command"], transfer["path"], transfer["bytes"]) == ("STOR", "/a.bin", 4321)
    assert (transfer["direction"], transfer["result"]) == ("upload", "ok")
    failed = next(e for e in lines if e["event"] == "login" and e.get("result") != "ok")
    assert (failed["result"], failed["user"], failed["level"]) == (
        "unknown_user",
        "mallory",
        "INFO",
    )
    assert "guessed-password-0" not in cluster.log()


def test_reopen_logs_after_a_rename_writes_to_the_new_file(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    log = tmp_path / "xferlog"
    config = config_toml(users=USERS) + f"[logging]\ntransfer_log = {json.dumps(str(log))}\n"
    cluster = start_cluster(workers=2, config=config)

    def upload(name: str, count: int) -> None:
        for index in range(count):  # fresh sessions: both workers write
            ftp = ftplib.FTP(timeout=10)
            ftp.connect(cluster.host, cluster.port)
            ftp.login("alice", PASSWORD)
            ftp.storbinary(f"STOR {name}{index}", io.BytesIO(b"q" * 100))
            ftp.quit()

    upload("old", 6)
    wait_for(lambda: len(log.read_text().splitlines()) == 6, timeout=5)
    rotated = tmp_path / "xferlog.1"
    log.rename(rotated)
    done = cli("reopen-logs", "--pid-file", str(cluster.pid_file))
    assert done.returncode == 0, done.stderr
    # Each worker reopens when its SIGUSR2 arrives, and says so.
    wait_for(lambda: cluster.log().count("reopened the transfer log") == 2, timeout=5)
    assert log.exists()
    upload("new", 6)
    wait_for(lambda: len(log.read_text().splitlines()) == 6, timeout=5)
    old_lines = rotated.read_text().splitlines()
    new_lines = log.read_text().splitlines()
    assert all("/old" in line for line in old_lines) and len(old_lines) == 6
    assert all("/new" in line for line in new_lines), new_lines
    for line in old_lines + new_lines:
        assert len(line.split()) == 18 and line.endswith(" alice ftp 0 * c"), line
    assert cluster.process.poll() is None  # SIGUSR1 did not stop the supervisor
    assert len(cluster.worker_pids()) == 2  # nor retire the workers


def test_reopen_logs_without_a_running_cluster_fails_clearly(tmp_path: Path) -> None:
    done = cli("reopen-logs", "--pid-file", str(tmp_path / "none.pid"))
    assert done.returncode == 1
    assert "is ftp-cluster running?" in done.stderr
