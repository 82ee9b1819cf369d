"""The benchmark's quick mode runs end to end in the test suite, so the harness cannot rot.

It runs ``python -m bench --quick`` as a real subprocess (real servers, real
client, tiny sizes) and checks that the JSON has a figure for every quick
scenario and server, that the charts were drawn, and that nothing was left
behind (processes, test files).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest
from bench.peers.ftp_cluster import FtpClusterPeer
from bench.scenarios import SCENARIOS

from tests.programs import program

REPO = Path(__file__).resolve().parents[2]
SERVED_BY_BOTH = (
    "retr_single",
    "stor_single",
    "login",
    "retr_many",
    "stor_many",
    "idle_memory",
    "churn",
    # FTPS: pyftpdlib's TLS_FTPHandler (pyOpenSSL, in the bench extra) and ftp-cluster.
    "ftps_retr_single",
    "ftps_stor_single",
    "ftps_login",
    "ftps_idle_memory",
    "ftps_churn",
)
CHARTS = {"throughput.png", "concurrency.png", "memory.png", "churn.png", "ftps.png"}


def _headline(results: dict[str, Any], key: str, label: str) -> float:
    scenario = results["scenarios"][key]
    figures = scenario["results"][label]
    assert "error" not in figures and "skipped" not in figures, (key, label, figures)
    value = figures[scenario["headline"]]
    assert isinstance(value, int | float), (key, label, figures)
    return float(value)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    out = tmp_path_factory.mktemp("bench")
    shm = Path("/dev/shm")
    data = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path_factory.mktemp("data")
    # Other fixtures of the session (a redis-server) may be our children already.
    children_before = {child.pid for child in psutil.Process().children(recursive=True)}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--data-dir", str(data)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        left = list(data.iterdir())
    finally:
        shutil.rmtree(data, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert not left, f"the benchmark left its test files behind: {left}"
    left_running = [
        child.pid
        for child in psutil.Process().children(recursive=True)
        if child.pid not in children_before and child.is_running()
    ]
    assert not left_running, f"the benchmark left processes behind: {left_running}"
    # The table goes to stdout, the progress lines to stderr.
    return json.loads((out / "results.json").read_text()), out, result.stdout + result.stderr


def test_every_quick_scenario_has_pyftpdlib_figures(
    quick_run: tuple[dict[str, Any], Path, str],
) -> None:
    results, _out, _output = quick_run
    assert set(results["scenarios"]) == {s.key for s in SCENARIOS}
    for key in SERVED_BY_BOTH:
        figures = results["scenarios"][key]["results"]["pyftpdlib"]
        assert _headline(results, key, "pyftpdlib") > 0, key
        assert all(not v for k, v in figures.items() if k.endswith("failures")), (key, figures)
    # pyftpdlib has no cluster-wide throttle: skipped, with the reason, not dropped.
    assert results["scenarios"]["throttle"]["results"]["pyftpdlib"]["skipped"]
    # Scenarios 3 to 5 run in rounds across the servers, one run each per round.
    for key in ("retr_many", "stor_many"):
        assert len(results["scenarios"][key]["results"]["pyftpdlib"]["runs_s"]) == 2, key
    logins = results["scenarios"]["login"]["results"]["pyftpdlib"]
    assert len(logins["concurrent_runs_s"]) == len(logins["sequential_runs_s"]) == 2
    assert results["raw_limit"]["mb_s_best"] > 0
    assert results["machine"]["cpu_model"] and results["machine"]["versions"]["pyftpdlib"]


def test_ftp_cluster_ran_or_says_why_not(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    results, _out, _output = quick_run
    peer = results["peers"]["ftp-cluster-2"]
    if FtpClusterPeer(2).unavailable() is not None:
        # Only while the CLI cannot start at all: then every run says why it was skipped.
        assert peer["skipped"]
        for key in SERVED_BY_BOTH:
            assert results["scenarios"][key]["results"]["ftp-cluster-2"]["skipped"]
        return
    assert peer["skipped"] is None
    for key in SERVED_BY_BOTH:
        assert _headline(results, key, "ftp-cluster-2") > 0, key
    program("redis-server")  # scenarios 8 and 9 run on it
    throttle = results["scenarios"]["throttle"]["results"]["ftp-cluster-2"]
    assert _headline(results, "throttle", "ftp-cluster-2") > 0
    assert throttle["redis_commands"] > 0 and throttle["rate_series"]
    for label in ("ftp-cluster-1 in-process", "ftp-cluster-1 redis"):
        assert _headline(results, "redis_cost", label) > 0, label
    assert results["scenarios"]["redis_cost"]["summary"]["redis_vs_in_process"] > 0


def test_ftps_scenarios_speak_tls_and_resume_on_data_connections(
    quick_run: tuple[dict[str, Any], Path, str],
) -> None:
    results, _out, output = quick_run
    for label in ("pyftpdlib", "ftp-cluster-2"):
        if label == "ftp-cluster-2" and results["peers"][label]["skipped"]:
            continue  # test_ftp_cluster_ran_or_says_why_not says why
        for key in ("ftps_retr_single", "ftps_stor_single"):
            figures = results["scenarios"][key]["results"][label]
            tls = figures["tls"]
            assert set(tls["versions"]) <= {"TLSv1.2", "TLSv1.3"} and tls["versions"], tls
            # Every data connection resumed the control connection's TLS session
            # (ftp-cluster refuses one that does not: the transfer would have failed).
            assert tls["data_connections"] == figures["runs"] > 0, (key, label, figures)
            assert tls["data_resumed"] == tls["data_connections"], (key, label, tls)
        # Plain scenarios stay plain.
        assert "tls" not in results["scenarios"]["retr_single"]["results"][label]
    assert "10 FTPS RETR" in output and "14 TLS churn" in output
    assert any(check["target"] == "idle TLS session <= 48 KiB" for check in results["targets"])


def test_outputs_table_and_charts(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    results, out, output = quick_run
    assert "1 RETR" in output and "pyftpdlib" in output and "Targets" in output
    assert set(results["charts"]) >= CHARTS
    for name in results["charts"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert results["targets"], "targets are evaluated for ftp-cluster"


def test_transfer_rounds_alternate_between_servers(
    quick_run: tuple[dict[str, Any], Path, str],
) -> None:
    """Each round runs every server once, the order reversed every other round."""
    _results, _out, output = quick_run
    started = [
        line.split("] ", 1)[1]
        for line in output.splitlines()
        if line.startswith("[") and "N concurrent RETRs" in line
    ]
    assert started == [
        "4. N concurrent RETRs · ftp-cluster-2 (round 1/2)",
        "4. N concurrent RETRs · pyftpdlib (round 1/2)",
        "4. N concurrent RETRs · pyftpdlib (round 2/2)",
        "4. N concurrent RETRs · ftp-cluster-2 (round 2/2)",
    ]
