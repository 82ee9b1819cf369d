"""Lookups per second of one user row through asyncpg and psycopg 3 (no cache).

What a worker does for a login whose user is not cached: take a pooled
connection, run the prepared ``SELECT ... WHERE login = $1``, build the
:class:`~ftp_cluster.shared.users.User`. Run against a scratch database::

    python -m bench.accounts_driver postgresql://ftp@127.0.0.1:PORT/DB

Scenario 16 (cache off) runs :func:`compare` with fewer lookups against its
private PostgreSQL. psycopg is not a dependency of the project:
``pip install 'psycopg[binary,pool]'`` to compare (it is skipped otherwise).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import uvloop

from ftp_cluster.shared.accounts.rows import COLUMNS, user_from_row
from ftp_cluster.shared.accounts.schema import migrate

USERS = 1000
LOOKUPS = 20_000
CONCURRENCY = 16
POOL = 2  # a worker's pool
ROUNDS = 5
__all__ = ["compare"]

_QUERY = f"SELECT {', '.join(COLUMNS)} FROM ftp_users WHERE login = $1"


async def _prepare(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
        await connection.execute("DELETE FROM ftp_users WHERE login LIKE 'bench%'")
        await connection.executemany(
            "INSERT INTO ftp_users (login, home_path) VALUES ($1, '/')",
            [(f"bench{n}",) for n in range(USERS)],
        )
    finally:
        await connection.close()


async def _drive(
    lookup: Callable[[str], Awaitable[None]], lookups: int = LOOKUPS
) -> tuple[float, float]:
    """Lookups per second, and the client's CPU microseconds per lookup (what a
    worker spends; steadier than the rate on a busy machine)."""
    logins = [f"bench{random.randrange(USERS)}" for _ in range(lookups)]
    per_task = lookups // CONCURRENCY

    async def run(part: int) -> None:
        for login in logins[part * per_task : (part + 1) * per_task]:
            await lookup(login)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(run(n) for n in range(CONCURRENCY)))
    done = per_task * CONCURRENCY
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1e6


async def _asyncpg(url: str, lookups: int = LOOKUPS) -> tuple[float, float]:
    pool = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL)

    async def lookup(login: str) -> None:
        async with pool.acquire() as connection:
            row = await connection.fetchrow(_QUERY, login)
        assert row is not None
        user_from_row(row)

    try:
        return await _drive(lookup, lookups)
    finally:
        await pool.close()


async def _psycopg(url: str, lookups: int = LOOKUPS) -> tuple[float, float] | None:
    try:
        from psycopg.rows import dict_row  # noqa: PLC0415
        from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415
    except ImportError:
        return None
    query = _QUERY.replace("$1", "%s")
    pool = AsyncConnectionPool(url, min_size=POOL, max_size=POOL, open=False)
    await pool.open()

    async def lookup(login: str) -> None:
        async with (
            pool.connection() as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(query, (login,), prepare=True)
            row = await cursor.fetchone()
        assert row is not None
        user_from_row(row)

    try:
        return await _drive(lookup, lookups)
    finally:
        await pool.close()


async def compare(url: str, lookups: int = LOOKUPS, rounds: int = ROUNDS) -> dict[str, Any]:
    """Per driver: median and best lookups/s and median CPU us per lookup, or None when
    the driver is not installed. Adds ``USERS`` rows ``bench0..`` to ``url``'s table."""
    await _prepare(url)
    results: dict[str, list[tuple[float, float]]] = {"asyncpg": [], "psycopg": []}
    for _ in range(rounds):  # alternated, so the machine's load hits both alike
        for name, measure in (("asyncpg", _asyncpg), ("psycopg", _psycopg)):
            result = await measure(url, lookups)
            if result is not None:
                results[name].append(result)
    summary: dict[str, Any] = {}
    for name, found in results.items():
        rates = sorted(rate for rate, _ in found)
        cpu = sorted(us for _, us in found)
        summary[name] = (
            {
                "lookups_per_s": rates[len(rates) // 2],
                "lookups_per_s_best": rates[-1],
                "cpu_us_per_lookup": cpu[len(cpu) // 2],
            }
            if found
            else None
        )
    return summary


async def _main(url: str) -> None:
    for name, figures in (await compare(url)).items():
        if figures is None:
            print(f"{name}: not installed")
            continue
        print(
            f"{name}: {figures['lookups_per_s']:,.0f} lookups/s median "
            f"(best {figures['lookups_per_s_best']:,.0f}), "
            f"{figures['cpu_us_per_lookup']:.0f} us CPU per lookup median"
        )


if __name__ == "__main__":
    uvloop.run(_main(sys.argv[1]))
