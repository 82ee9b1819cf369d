"""A row of ``ftp_users`` as a :class:`~ftp_cluster.shared.users.User`, or why not.

The panel writing the table is another program: every column is checked as
strictly as the same key of ``[[users]]`` (the checks are those fields' own),
and a row that fails is a :class:`BadRow` naming the column and the problem,
never the value of ``password_hash``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from ftp_cluster.shared.config import check_setting, setting_specs
from ftp_cluster.shared.fields import Invalid
from ftp_cluster.shared.passwords import is_valid_hash
from ftp_cluster.shared.users import Permission, User

__all__ = [
    "COLUMNS",
    "LIMIT_COLUMNS",
    "QUOTA_COLUMNS",
    "BadRow",
    "Row",
    "permission_json",
    "permissions_from_json",
    "user_from_row",
]

#: The limit columns, named as the ``[[users]]`` keys.
LIMIT_COLUMNS = (
    "maximum_connections",
    "read_speed_limit",
    "write_speed_limit",
    "read_speed_limit_per_connection",
    "write_speed_limit_per_connection",
)
#: Migration 2: NULL is "[server] default_quota_*", 0 unlimited (as in [[users]]).
QUOTA_COLUMNS = ("quota_bytes", "quota_files")
#: What a login needs from a row, in the order the query selects them.
COLUMNS = (
    "login",
    "password_hash",
    "home_path",
    "base_path",
    "permissions",
    *LIMIT_COLUMNS,
    *QUOTA_COLUMNS,
    "disabled",
)

_RESERVED = "<anonymous>"  # User.key of the anonymous account


class Row(Protocol):
    """A row by column name: an asyncpg ``Record``, or a dict."""

    def __getitem__(self, column: str) -> Any: ...


class BadRow(ValueError):
    """A row that cannot be a user: ``column`` and ``problem`` say why."""

    def __init__(self, column: str, problem: str) -> None:
        self.column = column
        self.problem = problem
        super().__init__(f"{column}: {problem}")


def user_from_row(row: Row) -> User:
    """The user a row stands for (its ``disabled`` flag is the caller's)."""
    login = _checked("login", row["login"])
    password_hash = row["password_hash"]
    if password_hash is not None and (
        not isinstance(password_hash, str) or not is_valid_hash(password_hash)
    ):
        raise BadRow("password_hash", "is not a hash of a supported format")
    base_path = row["base_path"]
    if base_path is not None:
        if not isinstance(base_path, str) or not base_path.startswith("/"):
            raise BadRow("base_path", "must be an absolute real directory (starting with '/')")
        base_path = Path(base_path)
    limits = {name: _checked(name, row[name]) for name in (*LIMIT_COLUMNS, *QUOTA_COLUMNS)}
    return User(
        login,
        password_hash=password_hash,
        base_path=base_path,
        home_path=_checked("home_path", row["home_path"]),
        permissions=permissions_from_json(row["permissions"]),
        **limits,
    )


def _checked(column: str, raw: object) -> Any:
    if raw is None:
        return None
    try:
        value = check_setting(User, column, raw)
    except Invalid as exc:
        raise BadRow(column, exc.describe()) from None
    if column == "login" and value == _RESERVED:
        raise BadRow(column, f"{_RESERVED!r} is reserved")
    return value


def permissions_from_json(raw: object) -> tuple[Permission, ...]:
    """The ``permissions`` column (JSON text or already decoded) as permissions."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadRow("permissions", "is not valid JSON") from None
    if not isinstance(raw, list):
        raise BadRow("permissions", "must be a list of {path, readable, writable} objects")
    specs = setting_specs(Permission)
    found = []
    for number, entry in enumerate(raw):
        where = f"permissions[{number}]"
        if not isinstance(entry, dict):
            raise BadRow(where, "must be an object {path, readable, writable}")
        unknown = set(entry) - set(specs)
        if unknown:
            raise BadRow(where, f"unknown key {min(unknown)!r} (known: {', '.join(specs)})")
        values: dict[str, Any] = {}
        for name, value in entry.items():
            try:
                values[name] = check_setting(Permission, name, value)
            except Invalid as exc:
                raise BadRow(f"{where}.{name}", exc.describe()) from None
        found.append(Permission(**values))
    return tuple(found)


def permission_json(permissions: tuple[Permission, ...]) -> str:
    """Permissions as the column's JSON."""
    return json.dumps(
        [{"path": str(p.path), "readable": p.readable, "writable": p.writable} for p in permissions]
    )
