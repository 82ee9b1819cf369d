"""Scenario 16 (database logins) runs end to end with tiny numbers and produces figures.

It runs ``python -m bench --scenario accounts_db`` as a real subprocess: a
private PostgreSQL (initdb in a temp dir, free port), ``ftp-cluster users
init-db``, ftp-cluster with one worker, real logins. No ratio is asserted
here: the speed goal is the benchmark's (bench/README.md, bench/targets.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from bench.private_postgres import find_binaries

REPO = Path(__file__).resolve().parents[2]
LOGINS = 10


def test_database_logins_scenario_produces_figures(tmp_path: Path) -> None:
    if find_binaries() is None:
        pytest.fail(
            "PostgreSQL server binaries not found: install them (apt-get install postgresql)"
        )
    children_before = {child.pid for child in psutil.Process().children(recursive=True)}
    argv = [sys.executable, "-m", "bench", "--scenario", "accounts_db", "--servers", "ftp-cluster"]
    argv += ["--workers", "1", "--clients", str(LOGINS), "--repeat", "1", "--no-charts"]
    argv += ["--out", str(tmp_path)]
    result = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    left = [
        child.pid
        for child in psutil.Process().children(recursive=True)
        if child.pid not in children_before and child.is_running()
    ]
    assert not left, f"the benchmark left processes behind (PostgreSQL?): {left}"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["private_postgres"]["version"], results.get("warnings")
    runs = results["scenarios"]["accounts_db"]["results"]
    assert set(runs) == {"ftp-cluster-1 cached", "ftp-cluster-1 cache off"}, runs
    for label, figures in runs.items():
        assert "error" not in figures and "skipped" not in figures, (label, figures)
        assert figures["failures"] == {}, (label, figures)
        assert figures["logins"] == LOGINS and figures["rounds"] == 1
        assert figures["file_s"] > 0 and figures["db_s"] > 0, (label, figures)
        assert len(figures["file_runs_s"]) == len(figures["db_runs_s"]) == 1
    assert runs["ftp-cluster-1 cached"]["db_cold_s"] > 0
    assert runs["ftp-cluster-1 cache off"]["drivers"]["asyncpg"]["lookups_per_s"] > 0
    summary = results["scenarios"]["accounts_db"]["summary"]
    assert summary["warm_vs_file"] > 0 and summary["cache_off_logins_per_s"] > 0, summary
    target = next(c for c in results["targets"] if c["target"].startswith("warm DB logins"))
    assert target["value"] is not None, target
    assert "16 10 logins in a row, ftp-cluster-1 cached" in result.stdout
