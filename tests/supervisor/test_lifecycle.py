"""Start, status, stop: the supervisor's life as its users see it."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import psutil

from ftp_cluster.shared.passwords import verify_password
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import alive, cli, wait_for


def test_listening_line_then_clean_exit_on_sigterm(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    assert cluster.workers == 1 and cluster.port > 0
    assert cluster.stdout.count(b"\n") == 1  # exactly one line
    workers = cluster.worker_pids()
    assert len(workers) == 1
    cluster.session()
    cluster.send(signal.SIGTERM)
    assert cluster.wait(15) == 0
    assert cluster.stdout.count(b"\n") == 1
    assert not alive(workers)
    assert not cluster.pid_file.exists()
    assert not Path(f"{cluster.pid_file}.sock").exists()


def test_sigterm_closes_the_listening_socket_at_once(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1, config="[server]\nwrite_speed_limit = 200000\n")
    (cluster.root / "big.bin").write_bytes(b"x" * 400_000)
    busy = cluster.client()
    busy.voidcmd("TYPE I")
    connection = busy.transfercmd("RETR big.bin")  # 400 KB at 200 KB/s: about 2 s
    connection.settimeout(10)
    first = connection.recv(65536)
    cluster.send(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection((cluster.host, cluster.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, timeout=2)
    received = len(first)
    while chunk := connection.recv(65536):
        received += len(chunk)
    connection.close()
    assert received == 400_000  # the running transfer finished
    assert busy.voidresp().startswith("226")
    assert cluster.wait(20) == 0


def test_status_json_fields(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    (cluster.root / "f.bin").write_bytes(b"y" * 10_000)
    ftp = cluster.client()
    ftp.retrbinary("RETR f.bin", lambda _: None)
    status = wait_for(lambda: _with_session(cluster.status()), timeout=5)
    ftp.quit()
    assert status["pid"] == cluster.pid
    assert status["address"] == f"ftp://127.0.0.1:{cluster.port}"
    assert status["state"] == "running"
    assert status["redis"]["url"] is None
    (worker,) = status["workers"]
    assert worker["slot"] == 0
    assert worker["pid"] in cluster.worker_pids()
    assert worker["state"] == "accepting"
    assert worker["uptime"] >= 0
    assert worker["sessions"] == 1
    assert worker["bytes_downloaded"] >= 10_000
    text = cli("status", "--pid-file", str(cluster.pid_file))
    assert text.returncode == 0
    assert str(worker["pid"]) in text.stdout and "accepting" in text.stdout


def _with_session(status: dict[str, object]) -> dict[str, object] | None:
    workers = status["workers"]
    assert isinstance(workers, list)
    ready = workers and workers[0]["sessions"] == 1 and workers[0]["bytes_downloaded"] >= 10_000
    return status if ready else None


def test_stop_command_waits_for_the_exit(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    workers = cluster.worker_pids()
    done = cli("stop", "--pid-file", str(cluster.pid_file))
    assert done.returncode == 0, done.stderr
    assert not psutil.pid_exists(cluster.pid) or cluster.process.poll() is not None
    assert cluster.wait(5) == 0
    assert not alive(workers)
    again = cli("stop", "--pid-file", str(cluster.pid_file))
    assert again.returncode != 0
    assert "no pid file" in again.stderr


def test_sigint_is_a_fast_stop(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1, config="[server]\nwrite_speed_limit = 100000\n")
    (cluster.root / "big.bin").write_bytes(b"x" * 1_000_000)  # ten seconds' worth
    busy = cluster.client()
    busy.voidcmd("TYPE I")
    connection = busy.transfercmd("RETR big.bin")
    connection.settimeout(10)
    received = len(connection.recv(65536))
    cluster.send(signal.SIGINT)
    started = time.monotonic()
    while chunk := connection.recv(65536):
        received += len(chunk)
    connection.close()
    assert cluster.wait(10) == 0
    assert time.monotonic() - started < 5
    assert received < 1_000_000  # cut, not finished


def test_second_start_on_the_same_pid_file_is_refused(start_cluster: StartCluster) -> None:
    cluster = start_cluster(workers=1)
    done = cli("start", "--port", "0", "--pid-file", str(cluster.pid_file), timeout=20)
    assert done.returncode == 1
    assert "already running" in done.stderr


def test_port_in_use_is_refused(start_cluster: StartCluster, tmp_path: Path) -> None:
    cluster = start_cluster(workers=1)
    done = cli(
        "start", "--port", str(cluster.port), "--pid-file", str(tmp_path / "b.pid"), timeout=20
    )
    assert done.returncode == 1
    assert "cannot listen" in done.stderr


def test_config_error_at_start_names_key_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nhost = "127.0.0.1"\nmaximum_connections = -3\n')
    done = cli("start", "--config", str(config), "--pid-file", str(tmp_path / "p.pid"))
    assert done.returncode == 2
    assert f"{config}, line 3: server.maximum_connections" in done.stderr
    assert done.stdout == ""
    flag = cli("start", "--port", "70000", "--pid-file", str(tmp_path / "p.pid"))
    assert flag.returncode == 2
    assert "server.port" in flag.stderr


def test_hash_password_reads_stdin() -> None:
    done = cli("hash-password", stdin="s3cret\n")
    assert done.returncode == 0, done.stderr
    assert verify_password("s3cret", done.stdout.strip())
    assert not verify_password("s3cret\n", done.stdout.strip())
    assert cli("hash-password", stdin="").returncode == 1
