"""Users in PostgreSQL: migrations, the directory's lookups and cache, bad rows, outages.

Against real PostgreSQL servers started by the test session (tests/postgres.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import pytest

from ftp_cluster.shared.accounts.database import AccountsUnavailable, UserDatabase
from ftp_cluster.shared.accounts.directory import Directory
from ftp_cluster.shared.accounts.schema import migrate, migrations
from ftp_cluster.shared.passwords import hash_password
from ftp_cluster.shared.users import User, UserTable
from tests.postgres import PostgresServer

T = TypeVar("T")
HASH = hash_password("Db-Secret-41", log2_n=4)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def sql(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def init(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        return [m.name for m in await migrate(connection)]
    finally:
        await connection.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(
    url: str, table: UserTable | None = None, cache: float = 5.0
) -> tuple[Directory, Clock]:
    clock = Clock()
    database = UserDatabase(url, timeout=2.0)
    return Directory(table or UserTable([]), database, cache_seconds=cache, clock=clock), clock


def test_init_db_applies_each_migration_once_and_adds_the_quota_columns(postgres_url: str) -> None:
    assert run(init(postgres_url)) == [m.name for m in migrations()]
    assert [m.version for m in migrations()][:2] == [1, 2]
    assert run(init(postgres_url)) == []

    async def columns() -> set[str]:
        connection = await asyncpg.connect(postgres_url)
        try:
            rows = await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'ftp_users'"
            )
            return {row["column_name"] for row in rows}
        finally:
            await connection.close()

    assert {"login", "password_hash", "permissions", "quota_bytes", "quota_files"} <= run(columns())


def test_rows_become_users_and_the_file_wins(postgres_url: str) -> None:
    run(init(postgres_url))
    run(sql(postgres_url,
        "INSERT INTO ftp_users (login, password_hash, home_path, base_path, permissions, "
        "maximum_connections, read_speed_limit, quota_bytes) VALUES ('dora', "
        f"'{HASH}', '/home', '/srv/dora', "
        "'[{\"path\": \"/\", \"readable\": true, \"writable\": false}]', 3, 0, 1000)",
        "INSERT INTO ftp_users (login) VALUES ('filed')",
    ))  # fmt: skip
    filed = User("filed", "File-Pass-77")
    found, _ = directory(postgres_url, UserTable([filed]))

    async def lookups() -> tuple[User | None, User | None, User | None]:
        try:
            return await found.find("dora"), await found.find("filed"), await found.find("nobody")
        finally:
            await found.close()

    dora, file_user, nobody = run(lookups())
    assert dora is not None and dora.login == "dora"
    assert dora.check_password("Db-Secret-41") and not dora.check_password("wrong")
    assert str(dora.home_path) == "/home" and str(dora.base_path) == "/srv/dora"
    assert dora.maximum_connections == 3 and dora.read_speed_limit is None  # 0: unlimited
    assert (dora.quota_bytes, dora.quota_files) == (1000, None)
    assert not dora.permission_for(dora.home_path).writable
    assert file_user is filed
    assert nobody is None


def test_changes_are_seen_once_cache_seconds_pass(postgres_url: str) -> None:
    run(init(postgres_url))
    run(sql(postgres_url, f"INSERT INTO ftp_users (login, password_hash) VALUES ('eve', '{HASH}')"))
    found, clock = directory(postgres_url, cache=5.0)

    async def scenario() -> None:
        try:
            assert await found.find("eve") is not None
            await sql(postgres_url, "UPDATE ftp_users SET disabled = true WHERE login = 'eve'")
            clock.now += 4.9
            assert await found.find("eve") is not None  # cached
            clock.now += 0.2
            assert await found.find("eve") is None  # disabled
            await sql(postgres_url, "UPDATE ftp_users SET disabled = false WHERE login = 'eve'")
            clock.now += 5.1
            assert await found.find("eve") is not None
            await sql(postgres_url, "DELETE FROM ftp_users WHERE login = 'eve'")
            clock.now += 5.1
            assert await found.find("eve") is None
            lookups = found.database.lookups if found.database else 0
            await asyncio.gather(*(found.find("eve") for _ in range(3)))
            assert found.database is not None and found.database.lookups == lookups  # cached
        finally:
            await found.close()

    run(scenario())


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ('permissions = \'{"path": "/"}\'', "permissions: must be a list"),
        ("permissions = '[\"/\"]'", "permissions[0]: must be an object"),
        ('permissions = \'[{"path": "rel"}]\'', "permissions[0].path"),
        ("maximum_connections = -1", "maximum_connections: must be at least 0"),
        ("read_speed_limit = -5", "read_speed_limit: must be at least 0"),
        ("password_hash = '$9$unknown$format'", "password_hash: is not a hash"),
        ("home_path = 'relative'", "home_path: must be an absolute"),
        ("base_path = 'relative'", "base_path: must be an absolute"),
    ],
)
def test_a_bad_row_refuses_only_its_login_and_is_logged_once(
    postgres_url: str, values: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    run(init(postgres_url))
    run(sql(postgres_url,
        f"INSERT INTO ftp_users (login, password_hash) VALUES ('bad', '{HASH}'), ('good', NULL)",
        f"UPDATE ftp_users SET {values} WHERE login = 'bad'",
    ))  # fmt: skip
    found, clock = directory(postgres_url, cache=1.0)

    async def scenario() -> None:
        try:
            for _ in range(3):
                assert await found.find("bad") is None
                assert await found.find("good") is not None
                clock.now += 2
        finally:
            await found.close()

    with caplog.at_level(logging.ERROR, "ftp_cluster.accounts"):
        run(scenario())
    logged = [r.getMessage() for r in caplog.records if "bad row" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "'bad'" in logged[0] and problem in logged[0]
    assert HASH not in caplog.text


def test_wire_logins_a_row_cannot_have_are_no_user_not_an_outage(postgres_url: str) -> None:
    run(init(postgres_url))
    found, _ = directory(postgres_url)

    async def scenario() -> None:
        try:
            for login in ("nul\x00byte", "not-utf8-\udcff", "x" * 1000):
                assert await found.find(login) is None
            assert found.database is not None and found.database.failures == 0
        finally:
            await found.close()

    run(scenario())


def test_outage_gives_unavailable_for_uncached_logins_then_recovers(
    postgres_factory: Callable[[], PostgresServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = postgres_factory()
    url = server.url
    run(init(url))
    run(sql(url, f"INSERT INTO ftp_users (login, password_hash) VALUES ('held', '{HASH}'), "
                 f"('cold', '{HASH}')"))  # fmt: skip
    found, clock = directory(url, cache=1.0)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(found.find("held")) is not None
        server.stop()
        with caplog.at_level(logging.WARNING, "ftp_cluster.accounts"):
            for _ in range(3):
                clock.now += 2  # the held entry is stale: still served while down
                assert loop.run_until_complete(found.find("held")) is not None
                with pytest.raises(AccountsUnavailable):
                    loop.run_until_complete(found.find("cold"))
            server.start()
            assert loop.run_until_complete(found.find("cold")) is not None
        messages = [r.getMessage() for r in caplog.records]
        assert sum("unreachable" in m for m in messages) == 1, messages
        assert sum("reachable again" in m for m in messages) == 1, messages
    finally:
        loop.run_until_complete(found.close())
        loop.close()
