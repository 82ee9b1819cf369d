"""Bench: 300 logins of database users (cache cold, then warm) beside 300 file users.

One worker, so the warm pass finds every user in the one cache. Both sides
use the same cheap scrypt hash, so what differs is only where the user comes
from. The warm database path may cost at most 10% more than the file; the
figures (and the logins per second with the cache off: a database query
through asyncpg per login) are printed (``pytest -s``).
"""

from __future__ import annotations

import ftplib
import time

import asyncpg
import pytest

from ftp_cluster.shared.passwords import hash_password
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

LOGINS = 300
PASSWORD = "Bench-Login-Pw-4242"
HASH = hash_password(PASSWORD, log2_n=4)  # cheap: the lookup is what is measured
ROUNDS = 9


def logins(cluster: Cluster, prefix: str) -> float:
    """Seconds for LOGINS sequential connect/USER/PASS/QUIT rounds."""
    start = time.perf_counter()
    for n in range(LOGINS):
        ftp = ftplib.FTP(timeout=10)
        ftp.connect(cluster.host, cluster.port)
        ftp.login(f"{prefix}{n}", PASSWORD)
        ftp.quit()
    return time.perf_counter() - start


def cluster_config(url: str, cache_seconds: int) -> str:
    users = "".join(
        f'[[users]]\nlogin = "file{n}"\npassword_hash = "{HASH}"\n\n' for n in range(LOGINS)
    )
    return f'[accounts]\ndatabase = "{url}"\ncache_seconds = {cache_seconds}\n\n{users}'


def test_warm_database_logins_cost_at_most_10_percent_more_than_file_logins(
    start_cluster: StartCluster, postgres_url: str
) -> None:
    import asyncio  # noqa: PLC0415

    assert cli("users", "init-db", "--database", postgres_url).returncode == 0

    async def fill() -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.executemany(
                "INSERT INTO ftp_users (login, password_hash) VALUES ($1, $2)",
                [(f"db{n}", HASH) for n in range(LOGINS)],
            )
        finally:
            await connection.close()

    asyncio.run(fill())
    cluster = start_cluster(workers=1, config=cluster_config(postgres_url, 600))
    logins(cluster, "file")  # warm up the client and the worker
    cold = logins(cluster, "db")
    file_times, warm_times = [], []
    for _ in range(ROUNDS):  # interleaved, so the box's load hits both alike
        file_times.append(logins(cluster, "file"))
        warm_times.append(logins(cluster, "db"))
    uncached = start_cluster(workers=1, config=cluster_config(postgres_url, 0))
    logins(uncached, "file")
    no_cache = min(logins(uncached, "db") for _ in range(2))
    file_best, warm_best = min(file_times), min(warm_times)
    print(
        f"\n{LOGINS} logins: file {file_best:.3f} s, database cold {cold:.3f} s, "
        f"warm {warm_best:.3f} s ({warm_best / file_best - 1:+.1%} vs file); "
        f"cache off: {LOGINS / no_cache:.0f} logins/s ({LOGINS / file_best:.0f}/s from the file)"
    )
    assert warm_best <= file_best * 1.10, (file_times, warm_times)
