"""``ftp-cluster users ...``: the accounts in the database, for operators and panels.

Verbs: ``init-db`` (create or migrate the table), ``add``, ``set``, ``disable``,
``enable``, ``delete``, ``list`` and ``show``. Each takes ``--config FILE``
(its ``[accounts] database``) or ``--database URL``. Every value is checked
as the workers check a row (:mod:`ftp_cluster.shared.accounts.rows`) before
anything is written, so the CLI never writes a row a worker would refuse.
Password hashes are never printed: ``show`` says only whether one is set.
Exit status: 0 done, 1 the database said no or cannot be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from ftp_cluster.shared.accounts.database import describe_url
from ftp_cluster.shared.accounts.rows import (
    COLUMNS,
    LIMIT_COLUMNS,
    QUOTA_COLUMNS,
    BadRow,
    permission_json,
    permissions_from_json,
    user_from_row,
)
from ftp_cluster.shared.accounts.schema import TABLE, migrate
from ftp_cluster.shared.config import ConfigError, load_config
from ftp_cluster.shared.passwords import hash_password, is_valid_hash
from ftp_cluster.shared.settings import ClusterConfig
from ftp_cluster.shared.users import Permission

__all__ = ["add_users_parser", "run_users", "warn_overlaps"]

log = logging.getLogger("ftp_cluster.supervisor")

_CONNECT_TIMEOUT = 5.0
_RIGHTS = {"rw": (True, True), "ro": (True, False), "wo": (False, True), "none": (False, False)}
_LIMIT_FLAGS = {
    "maximum_connections": "--max-connections",
    "read_speed_limit": "--read-limit",
    "write_speed_limit": "--write-limit",
    "read_speed_limit_per_connection": "--read-limit-per-connection",
    "write_speed_limit_per_connection": "--write-limit-per-connection",
    "quota_bytes": "--quota-bytes",
    "quota_files": "--quota-files",
}


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


class Refused(Exception):
    """The database cannot be reached or says no (exit status 1)."""


def add_users_parser(commands: Any) -> None:
    """Register ``users`` and its verbs on the top-level subparsers."""
    users = commands.add_parser("users", help="manage the users in the database ([accounts])")
    verbs = users.add_subparsers(dest="verb", required=True, metavar="VERB")
    parsers = {
        "init-db": verbs.add_parser("init-db", help="create the table or apply new migrations"),
        "add": verbs.add_parser("add", help="add a user"),
        "set": verbs.add_parser("set", help="change a user (only what is given)"),
        "disable": verbs.add_parser("disable", help="refuse the user's logins (530)"),
        "enable": verbs.add_parser("enable", help="accept the user's logins again"),
        "delete": verbs.add_parser("delete", help="delete a user"),
        "list": verbs.add_parser("list", help="every user, one a line"),
        "show": verbs.add_parser("show", help="one user"),
    }
    for name, parser in parsers.items():
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--config", type=Path, help="TOML file with [accounts] database")
        source.add_argument("--database", metavar="URL", help="PostgreSQL URL")
        if name not in ("init-db", "list"):
            parser.add_argument("login", metavar="LOGIN")
        if name in ("list", "show"):
            parser.add_argument("--json", action="store_true", help="print JSON")
    for name in ("add", "set"):
        _account_options(parsers[name])
    parsers["set"].add_argument(
        "--any-password", action="store_true", help="accept any password (clears the hash)"
    )


def _account_options(parser: argparse.ArgumentParser) -> None:
    password = parser.add_mutually_exclusive_group()
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line"
    )
    password.add_argument("--password-hash", metavar="H", help="a hash of a supported format")
    parser.add_argument("--home", metavar="PATH", help="virtual directory a login starts in")
    parser.add_argument("--base", metavar="DIR", help="real directory behind / (absolute)")
    parser.add_argument(
        "--permission",
        action="append",
        metavar="PATH:rw|ro|wo|none",
        help="a permission (repeatable; replaces the user's list)",
    )
    for column, flag in _LIMIT_FLAGS.items():
        parser.add_argument(flag, dest=column, type=int, metavar="N", help=f"{column}; 0: none")
    parser.add_argument("--disabled", action="store_true", default=None, help="add it disabled")


def run_users(args: argparse.Namespace) -> int:
    """Carry out one ``users`` verb; the exit status."""
    try:
        url = _database_url(args)
        values = _values(args) if args.verb in ("add", "set") else {}
        return asyncio.run(_run(args, url, values))
    except UsageError as exc:
        return _fail(str(exc), 2)
    except Refused as exc:
        return _fail(str(exc), 1)


def _fail(message: str, code: int) -> int:
    print(f"ftp-cluster users: {message}", file=sys.stderr, flush=True)
    return code


def _database_url(args: argparse.Namespace) -> str:
    if args.database is not None:
        if not args.database.startswith(("postgresql://", "postgres://")):
            raise UsageError("--database must be a postgresql:// URL")
        return str(args.database)
    if args.config is None:
        raise UsageError("give --config FILE (with [accounts] database) or --database URL")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(f"config error: {exc}") from None
    if config.accounts.database is None:
        raise UsageError(f"{args.config}: [accounts] has no database")
    return config.accounts.database


def parse_permission(text: str) -> Permission:
    """``PATH:rw|ro|wo|none`` as a permission; raises :class:`UsageError`."""
    path, colon, rights = text.rpartition(":")
    if not colon or rights not in _RIGHTS or not path.startswith("/"):
        raise UsageError(
            f"bad permission {text!r}: expected PATH:rw, PATH:ro, PATH:wo or PATH:none "
            "with an absolute virtual PATH"
        )
    readable, writable = _RIGHTS[rights]
    return Permission(path, readable=readable, writable=writable)


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """The columns the options set, checked as a worker checks a row."""
    values: dict[str, Any] = {}
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("empty password on standard input")
        values["password_hash"] = hash_password(password)
    elif args.password_hash is not None:
        if not is_valid_hash(args.password_hash):
            raise UsageError("--password-hash is not a hash of a supported format")
        values["password_hash"] = args.password_hash
    elif getattr(args, "any_password", False):
        values["password_hash"] = None
    if args.home is not None:
        values["home_path"] = args.home
    if args.base is not None:
        values["base_path"] = args.base
    if args.permission:
        values["permissions"] = permission_json(tuple(parse_permission(p) for p in args.permission))
    for column in (*LIMIT_COLUMNS, *QUOTA_COLUMNS):
        if getattr(args, column) is not None:
            values[column] = getattr(args, column)
    if args.disabled:
        values["disabled"] = True
    row: dict[str, Any] = {
        "login": args.login,
        "password_hash": None,
        "home_path": "/",
        "base_path": None,
        "permissions": "[]",
        **dict.fromkeys((*LIMIT_COLUMNS, *QUOTA_COLUMNS)),
        **values,
    }
    try:
        user_from_row(row)
    except BadRow as bad:
        flag = _LIMIT_FLAGS.get(bad.column, bad.column)
        raise UsageError(f"{flag}: {bad.problem}") from None
    return values


async def _run(args: argparse.Namespace, url: str, values: dict[str, Any]) -> int:
    where = describe_url(url)
    try:
        connection = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Refused(f"cannot reach the users database {where}: {_reason(exc)}") from None
    try:
        return await _verb(connection, args, values)
    except asyncpg.UndefinedTableError:
        raise Refused(
            f"{where} has no table {TABLE}: run `ftp-cluster users init-db` first"
        ) from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Refused(f"the users database {where} failed: {_reason(exc)}") from None
    finally:
        await connection.close(timeout=_CONNECT_TIMEOUT)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _verb(
    connection: asyncpg.Connection, args: argparse.Namespace, values: dict[str, Any]
) -> int:
    verb = args.verb
    if verb == "init-db":
        applied = await migrate(connection)
        names = ", ".join(m.name for m in applied) if applied else "none (up to date)"
        print(f"migrations applied: {names}")
        return 0
    if verb == "list":
        rows = await connection.fetch(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY login")
        _print_users([_shown(row) for row in rows], as_json=args.json)
        return 0
    login: str = args.login
    if verb == "show":
        row = await connection.fetchrow(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE login = $1", login
        )
        if row is None:
            raise Refused(f"unknown user {login!r}")
        shown = _shown(row)
        print(json.dumps(shown, indent=2) if args.json else _describe(shown))
        return 0
    if verb == "add":
        columns = ["login", *values]
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        status = await connection.execute(
            f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({marks}) "
            "ON CONFLICT (login) DO NOTHING",
            login,
            *values.values(),
        )
        if status.endswith(" 0"):
            raise Refused(f"user {login!r} exists already (change it with `users set`)")
        print(f"added {login}")
        return 0
    if verb == "set":
        if not values:
            raise UsageError("nothing to change: give at least one option")
        changes = {**values}
    elif verb in ("disable", "enable"):
        changes = {"disabled": verb == "disable"}
    else:
        status = await connection.execute(f"DELETE FROM {TABLE} WHERE login = $1", login)
        if status.endswith(" 0"):
            raise Refused(f"unknown user {login!r}")
        print(f"deleted {login}")
        return 0
    assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, 2))
    status = await connection.execute(
        f"UPDATE {TABLE} SET {assignments} WHERE login = $1", login, *changes.values()
    )
    if status.endswith(" 0"):
        raise Refused(f"unknown user {login!r}")
    print(f"{verb.rstrip('e')}ed {login}" if verb != "set" else f"changed {login}")
    return 0


def _shown(row: asyncpg.Record) -> dict[str, Any]:
    """A row as printed: everything but the hash, of which only its presence."""
    shown: dict[str, Any] = {
        "login": row["login"],
        "password": "set" if row["password_hash"] else "any",
    }
    shown["home_path"] = row["home_path"]
    shown["base_path"] = row["base_path"]
    try:
        shown["permissions"] = [
            {"path": str(p.path), "readable": p.readable, "writable": p.writable}
            for p in permissions_from_json(row["permissions"])
        ]
    except BadRow as bad:
        shown["permissions"] = f"invalid: {bad.problem}"
    for column in (*LIMIT_COLUMNS, *QUOTA_COLUMNS):
        shown[column] = row[column]
    shown["disabled"] = row["disabled"]
    try:
        user_from_row(row)
    except BadRow as bad:
        shown["problem"] = str(bad)
    return shown


def _describe(shown: dict[str, Any]) -> str:
    lines = []
    for key, value in shown.items():
        text = "-" if value is None else str(value)
        if key == "permissions" and isinstance(value, list):
            text = ", ".join(_rights(p) for p in value) or "(none: no access)"
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def _rights(permission: dict[str, Any]) -> str:
    code = {v: k for k, v in _RIGHTS.items()}[(permission["readable"], permission["writable"])]
    return f"{permission['path']}:{code}"


def _print_users(users: Sequence[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(list(users), indent=2))
        return
    for user in users:
        state = "disabled" if user["disabled"] else "enabled"
        problem = f"  BAD ROW: {user['problem']}" if "problem" in user else ""
        print(f"{user['login']}\t{state}\thome {user['home_path']}{problem}")


def warn_overlaps(config: ClusterConfig) -> None:
    """At start-up: warn about logins both [[users]] and the database define (the file wins)."""
    url = config.accounts.database
    logins = [user.login for user in config.users if user.login is not None]
    if url is None or not logins:
        return

    async def both() -> list[str]:
        connection = await asyncpg.connect(url, timeout=config.accounts.timeout)
        try:
            rows = await connection.fetch(
                f"SELECT login FROM {TABLE} WHERE login = ANY($1::text[]) ORDER BY login", logins
            )
            return [row["login"] for row in rows]
        finally:
            await connection.close()

    try:
        found = asyncio.run(both())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning(
            "cannot check the users database %s for logins the file defines too: %s",
            describe_url(url),
            type(exc).__name__,
        )
        return
    for login in found:
        log.warning(
            "login %r is defined in [[users]] and in the users database: the file's is used",
            login,
        )
