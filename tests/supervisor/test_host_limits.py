"""The supervisor at scale: open files raised to the hard limit, somaxconn backlog, warnings."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import psutil

from ftp_cluster.shared.host_limits import capacity_warnings, listen_backlog
from ftp_cluster.shared.settings import ServerSettings
from tests.programs import program
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import wait_for


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files line")


def listen_queue(port: int) -> set[int]:
    """The backlogs (``ss``'s Send-Q of a listening socket) of every socket on ``port``."""
    ss = program("ss", "iproute2")
    out = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {int(line.split()[2]) for line in out.splitlines()}


def test_workers_get_the_hard_limit_the_somaxconn_backlog_and_warnings(
    start_cluster: StartCluster,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    config = "[server]\nmaximum_connections = 1000000\npassive_ports = [40000, 40009]\n"
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        cluster = start_cluster(workers=2, config=config, wait=False)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    cluster.wait_listening()
    workers = wait_for(
        lambda: cluster.worker_pids() if len(cluster.worker_pids()) == 2 else None, 10
    )
    for pid in workers:
        assert open_files_limit(pid)[0] == hard
    assert psutil.Process(cluster.pid).rlimit(psutil.RLIMIT_NOFILE)[0] == hard
    assert listen_queue(cluster.port) == {listen_backlog()}
    log = cluster.log()
    assert "RLIMIT_NOFILE" in log and "maximum_connections = 1000000" in log
    assert "passive_ports has 10 ports" in log


def test_no_warnings_when_the_host_and_ports_suffice() -> None:
    settings = ServerSettings(maximum_connections=100, passive_ports=(40000, 40199))
    assert capacity_warnings(settings, 4096) == []
    assert capacity_warnings(ServerSettings(), 64) == []  # unlimited: nothing to compare
    assert len(capacity_warnings(settings, 300)) == 1
