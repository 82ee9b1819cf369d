"""Scenario 16: logins of users from PostgreSQL beside the same logins from the TOML file.

Issue 15's bench. A private PostgreSQL (:mod:`bench.private_postgres`) gets
the table (``ftp-cluster users init-db``) and ``--clients`` users ``dbN``
(300 in a full run); ftp-cluster with one worker (so the warm pass finds every
user in the one cache) gets ``[accounts] database`` and the same number of
``[[users]]`` ``fileN`` in its TOML file. Both sides use the same cheap scrypt
hash, so what differs is only where the user comes from. Each login is a
connect, USER, PASS, QUIT, one after another.

Two servers, each started fresh:

- ``cached`` (``cache_seconds`` far above the run): one untimed pass of the
  file users, the cold database pass (first lookup of every user), then
  ``2 x --repeat - 1`` rounds (9) of a file pass and a warm database pass, the
  order alternating; the medians are compared (goal: warm <= 1.10x file).
- ``cache off`` (``cache_seconds = 0``): every login is a query through the
  driver (asyncpg): as many rounds of a file pass and a database pass,
  logins per second; then :func:`bench.accounts_driver.compare` measures the
  same lookup without FTP through asyncpg and psycopg (when installed): the
  driver choice of issue 15.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import subprocess
import time
import tomllib
from collections import Counter

import asyncpg

from bench.accounts_driver import compare
from bench.client import FtpSession, failure_kind
from bench.peers.base import Peer, Running, ServeSpec
from bench.peers.ftp_cluster import FtpClusterPeer, cli_path
from bench.scenarios.base import Context, Figures, RunPlan, counts
from ftp_cluster.shared.passwords import hash_password

__all__ = [
    "PASSWORD",
    "accounts_db",
    "plan_accounts_db",
    "prepare_database",
    "rounds_for",
    "summarize_db",
]

PASSWORD = "Bench-Db-Login-Pw-7431"
_CACHED_SECONDS = 86_400  # far above any run: the warm pass never asks the database
_DB_PREFIX, _FILE_PREFIX = "db", "file"
_INIT_TIMEOUT = 60
_DRIVER_LOOKUPS_PER_LOGIN = 10  # lookups per driver and round, per login of a pass
_DRIVER_ROUNDS = 3


@functools.cache
def password_hash() -> str:
    """Cheap scrypt (2**4): the lookup, not the hash, is what is measured."""
    return hash_password(PASSWORD, log2_n=4)


def rounds_for(repeat: int) -> int:
    """Odd, so the median is a measured round: a pass of 300 logins takes ~0.1 s, and on a
    loaded box 5 rounds do not find its floor, 9 do (``--repeat 5``); 1 for ``--repeat 1``."""
    return 2 * max(1, repeat) - 1


async def prepare_database(url: str, users: int) -> None:
    """``ftp-cluster users init-db``, then ``users`` rows ``db0..`` with the bench hash."""
    cli = cli_path()
    if cli is None:
        raise RuntimeError("the ftp-cluster command is not installed (pip install -e .)")
    done = await asyncio.to_thread(
        subprocess.run,
        [cli, "users", "init-db", "--database", url],
        capture_output=True,
        text=True,
        timeout=_INIT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ftp-cluster users init-db failed: {done.stderr.strip()[-300:]}")
    connection = await asyncpg.connect(url)
    try:
        await connection.executemany(
            "INSERT INTO ftp_users (login, password_hash) VALUES ($1, $2) "
            "ON CONFLICT (login) DO NOTHING",
            [(f"{_DB_PREFIX}{n}", password_hash()) for n in range(users)],
        )
    finally:
        await connection.close()


def _extra_config(url: str, cache_seconds: int, users: int) -> str:
    """``[accounts]`` and the file users, appended to the peer's own config."""
    lines = ["", "[accounts]", f'database = "{url}"', f"cache_seconds = {cache_seconds}"]
    for n in range(users):
        lines += ["", "[[users]]", f'login = "{_FILE_PREFIX}{n}"']
        lines += [f'password_hash = "{password_hash()}"', 'home_path = "/"']
    return "\n".join(lines) + "\n"


def plan_accounts_db(ctx: Context, peers: list[Peer]) -> list[RunPlan]:
    if not any(isinstance(peer, FtpClusterPeer) for peer in peers):
        return []
    peer = next(
        (p for p in peers if isinstance(p, FtpClusterPeer) and p.workers == 1), FtpClusterPeer(1)
    )
    labels = (f"{peer.name} cached", f"{peer.name} cache off")
    if ctx.postgres is None:
        why = ctx.postgres_missing or "no private PostgreSQL"
        return [RunPlan(label, peer, ctx.spec(), why) for label in labels]
    users = ctx.settings.clients
    return [
        RunPlan(
            label,
            peer,
            ctx.spec(extra_config=_extra_config(ctx.postgres.url, seconds, users)),
        )
        for label, seconds in zip(labels, (_CACHED_SECONDS, 0), strict=True)
    ]


async def _pass(ctx: Context, server: Running, prefix: str, failures: Counter[str]) -> float:
    """Seconds for ``--clients`` sequential connect/USER/PASS/QUIT of ``prefix0..``."""
    timeout = ctx.settings.timeout
    start = time.perf_counter()
    for n in range(ctx.settings.clients):
        try:
            async with asyncio.timeout(timeout):
                session = await FtpSession.open(server.host, server.port, None)
                try:
                    await session.login(f"{prefix}{n}", PASSWORD)
                except BaseException:
                    session.abort()
                    raise
                await session.quit()
        except Exception as exc:  # any failure is counted by kind
            failures[f"{prefix}: {failure_kind(exc)}"] += 1
    return time.perf_counter() - start


async def accounts_db(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    logins, rounds = ctx.settings.clients, rounds_for(ctx.settings.repeat)
    cached = tomllib.loads(spec.extra_config)["accounts"]["cache_seconds"] > 0
    failures: Counter[str] = Counter()
    ctx.reporter.detail(f"{logins} file logins (warm-up, untimed)")
    await _pass(ctx, server, _FILE_PREFIX, failures)
    figures: Figures = {"logins": logins, "rounds": rounds, "cached": cached}
    if cached:
        ctx.reporter.detail(f"{logins} database logins, cache cold")
        cold = await _pass(ctx, server, _DB_PREFIX, failures)
        figures["db_cold_s"] = cold
        figures["db_cold_logins_per_s"] = logins / cold if cold else None
    file_runs: list[float] = []
    db_runs: list[float] = []
    for number in range(rounds):
        ctx.reporter.detail(f"round {number + 1}/{rounds}")
        order = ((_FILE_PREFIX, file_runs), (_DB_PREFIX, db_runs))
        # Alternating the order cancels a steady drift of the machine's load.
        for prefix, runs in order if number % 2 == 0 else order[::-1]:
            runs.append(await _pass(ctx, server, prefix, failures))
    file_s, db_s = statistics.median(file_runs), statistics.median(db_runs)
    figures |= {
        "file_s": file_s,
        "db_s": db_s,
        "file_runs_s": [round(s, 4) for s in file_runs],
        "db_runs_s": [round(s, 4) for s in db_runs],
        "file_logins_per_s": logins / file_s if file_s else None,
        "db_logins_per_s": logins / db_s if db_s else None,
        "db_vs_file": db_s / file_s if file_s else None,
        "failures": counts(failures),
    }
    if not cached and ctx.postgres is not None:
        # The same lookup without FTP, through each driver installed (issue 15's choice).
        ctx.reporter.detail("driver lookups without FTP")
        lookups = _DRIVER_LOOKUPS_PER_LOGIN * logins
        figures["drivers"] = await compare(ctx.postgres.url, lookups, min(rounds, _DRIVER_ROUNDS))
    return figures


def summarize_db(ctx: Context, results: dict[str, Figures]) -> Figures:
    """The warm/file ratio of the cached server and the cache-off rate, side by side."""
    summary: Figures = {}
    for figures in results.values():
        if figures.get("failures") or not isinstance(figures.get("db_vs_file"), float):
            continue
        if figures.get("cached"):
            summary["warm_vs_file"] = figures["db_vs_file"]
            summary["cold_vs_file"] = (
                figures["db_cold_s"] / figures["file_s"] if figures["file_s"] else None
            )
        else:
            summary["cache_off_logins_per_s"] = figures["db_logins_per_s"]
            summary["cache_off_vs_file"] = figures["db_vs_file"]
            for driver, rate in (figures.get("drivers") or {}).items():
                if rate is not None:
                    summary[f"{driver}_lookups_per_s"] = rate["lookups_per_s"]
    return summary
