"""The users table's schema: numbered SQL migrations, applied once each.

``migrations/NNNN_name.sql`` are applied in order by ``ftp-cluster users
init-db``; table ``ftp_schema_version`` records which ran. Running it again
applies only what is new (nothing, usually), so it is idempotent, and a
later schema change (a new column) is one more file. An advisory lock makes
two hosts running it at once take turns instead of both applying a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

__all__ = ["TABLE", "Migration", "migrate", "migrations"]

#: The table panels write and the workers read.
TABLE = "ftp_users"
_VERSIONS = "ftp_schema_version"
#: pg_advisory_xact_lock key: "ftpc" in ASCII.
_LOCK = 0x66747063
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in (resources.files(__package__) / "migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def migrate(connection: asyncpg.Connection) -> list[Migration]:
    """Apply the migrations the database lacks, in one transaction; those applied."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {_VERSIONS} ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await connection.fetch(f"SELECT version FROM {_VERSIONS}")
        done = {row["version"] for row in rows}
        applied = []
        for migration in migrations():
            if migration.version in done:
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                f"INSERT INTO {_VERSIONS} (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration)
        return applied
