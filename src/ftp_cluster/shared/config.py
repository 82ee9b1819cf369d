"""Loading and validating the TOML configuration file.

Every key is optional and every value is checked before anything starts: an
unknown key, a wrong type, a missing directory or a value out of range raises
:class:`ConfigError` naming the key, the file and the line. Types come from the
dataclasses in :mod:`ftp_cluster.shared.settings` (the one source of truth);
this module only adds the checks a type cannot express.

Conventions of the file format: a limit of ``0`` means unlimited (``None``), so
does a timeout of ``0``; relative paths are relative to the file's directory.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from redis.connection import parse_url

from ftp_cluster.shared.limits.redis.connection import parse_sentinel_url, redact
from ftp_cluster.shared.passwords import is_valid_hash
from ftp_cluster.shared.settings import ClusterConfig, RedisSettings, ServerSettings
from ftp_cluster.shared.users import Permission, User

__all__ = ["ConfigError", "apply_overrides", "load_config", "setting_types"]

_LIMITS = frozenset(
    {
        "maximum_connections",
        "maximum_connections_per_ip",
        "read_speed_limit",
        "write_speed_limit",
        "read_speed_limit_per_connection",
        "write_speed_limit_per_connection",
    }
)
_OPTIONAL_TIMEOUTS = frozenset(
    {"socket_timeout", "path_timeout", "idle_timeout", "wait_future_timeout"}
)
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"})
_PERMISSION_KEYS = frozenset({"path", "readable", "writable"})
_USER_KEYS = frozenset(
    {"login", "password", "password_hash", "home_path", "base_path", "permissions"} | _LIMITS
) - {"maximum_connections_per_ip"}


class ConfigError(Exception):
    """A configuration problem, with the key, file and line it is about."""

    def __init__(
        self, message: str, *, key: str | None = None, source: str | None = None, line: int | None
    ) -> None:
        self.reason = message
        self.key = key
        self.source = source
        self.line = line
        where = source or "configuration"
        if line is not None:
            where = f"{where}, line {line}"
        prefix = f"{key}: " if key else ""
        super().__init__(f"{where}: {prefix}{message}")


class _Invalid(Exception):
    """A value problem found by a check; the caller adds key, file and line."""


def setting_types(cls: type[Any]) -> dict[str, Any]:
    """Resolved field annotations of a settings dataclass (``from __future__`` safe)."""
    return typing.get_type_hints(cls)


# --------------------------------------------------------------------- types


def _convert(value: object, tp: Any) -> object:
    """Check ``value`` (as parsed from TOML) against annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        # TOML has no null: an optional setting is either absent or the inner type.
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0])
    if origin is typing.Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise _Invalid(f"must be one of {allowed}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or len(value) != len(args):
            raise _Invalid(f"must be a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
    return _convert_scalar(value, tp)


def _convert_scalar(value: object, tp: Any) -> object:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid(f"must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Invalid(f"must be a number, got {value!r}")
    if tp is str or tp is Path:
        if isinstance(value, str):
            return Path(value) if tp is Path else value
        raise _Invalid(f"must be a string, got {value!r}")
    raise TypeError(f"unsupported setting type {tp!r}")  # a settings.py change, not user error


# -------------------------------------------------------------------- checks


def _in_range(value: int | float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _Invalid(f"must be {bound}, got {value!r}")


def _check_passive_ports(value: tuple[int, int]) -> None:
    low, high = value
    _in_range(low, 1, 65535)
    _in_range(high, 1, 65535)
    if low > high:
        raise _Invalid(f"first port must not exceed the second, got [{low}, {high}]")


def _check_ipv4(value: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise _Invalid(
            f"must be an IPv4 address (it goes into PASV replies), got {value!r}"
        ) from None


def _check_line(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise _Invalid("must be a single line")


def _check_word(value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise _Invalid(f"must be a non-empty word without spaces, got {value!r}")


def _check_redis_url(value: str) -> None:
    scheme = value.partition("://")[0] if "://" in value else ""
    if scheme not in _REDIS_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in sorted(_REDIS_SCHEMES))
        raise _Invalid(f"must start with one of {allowed}, got {redact(value)!r}")
    try:
        if parse_sentinel_url(value) is None:
            parse_url(value)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise _Invalid(f"is not a valid Redis URL: {exc}") from None


_CHECKS: dict[str, Callable[[Any], None]] = {
    "port": lambda v: _in_range(v, 0, 65535),
    "workers": lambda v: _in_range(v, 1, 1024),
    "host": _check_word,
    "passive_ports": _check_passive_ports,
    "masquerade_address": _check_ipv4,
    "graceful_timeout": lambda v: _in_range(v, 0),
    "worker_timeout": lambda v: _in_range(v, 0.5),
    "welcome_message": _check_line,
    "system_type": _check_line,
    "max_line_length": lambda v: _in_range(v, 64, 1 << 20),
    "url": _check_redis_url,
    "namespace": _check_word,
    "lease_ttl": lambda v: _in_range(v, 1),
    "spare_slots": lambda v: _in_range(v, 0, 100_000),
}


def _directory(value: Path, base: Path) -> Path:
    path = (base / value.expanduser()).resolve()
    if not path.exists():
        raise _Invalid(f"directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise _Invalid(f"{str(path)!r} is not a directory")
    return path


def _setting_value(name: str, raw: object, tp: Any, base: Path) -> object:
    """Convert and check one setting; returns what goes into the dataclass."""
    value = _convert(raw, tp)
    if name in _LIMITS:
        assert isinstance(value, int)
        _in_range(value, 0)
        return value or None
    if name in _OPTIONAL_TIMEOUTS:
        assert isinstance(value, float)
        _in_range(value, 0)
        return value or None
    if name in ("root", "base_path"):
        assert isinstance(value, Path)
        return _directory(value, base)
    check = _CHECKS.get(name)
    if check is not None:
        check(value)
    return value


# --------------------------------------------------------------------- lines

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


class _LineFinder:
    """Best-effort line numbers for keys (tomllib reports no positions).

    A location is a path such as ``("server", "port")``, ``("users", 2,
    "login")`` or ``("users", 0, "permissions", 1)``; the answer is the line of
    the deepest part that could be found, at worst the table's header.
    """

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        self._headers: list[tuple[int, str]] = []
        for number, line in enumerate(self._lines):
            match = _HEADER.match(line)
            if match:
                self._headers.append((number, match.group(2).replace(" ", "")))

    def find(self, *where: str | int) -> int | None:
        if not where or not isinstance(where[0], str):
            return None
        table, rest = where[0], list(where[1:])
        index = 0
        if rest and isinstance(rest[0], int):
            index = rest[0]
            del rest[0]
        start, end = self._table(table, index)
        if start is None:
            return self._key(table, 0, len(self._lines))
        best = start
        while rest:
            key = rest.pop(0)
            if not isinstance(key, str):
                break
            found = self._key(key, start + 1, end)
            if rest and isinstance(rest[0], int):
                line = found - 1 if found is not None else start
                return self._item(f"{table}.{key}", rest[0], line, end) + 1
            if found is None:
                break
            best = found - 1
        return best + 1

    def _table(self, name: str, index: int) -> tuple[int | None, int]:
        matching = [n for n, header in self._headers if header == name]
        if index >= len(matching):
            return None, len(self._lines)
        start = matching[index]
        later = [n for n, h in self._headers if n > start and not h.startswith(name + ".")]
        return start, later[0] if later else len(self._lines)

    def _key(self, key: str, start: int, end: int) -> int | None:
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*[=.]")
        for number in range(start, end):
            if pattern.match(self._lines[number]):
                return number + 1
        return None

    def _item(self, header: str, index: int, start: int, end: int) -> int:
        subtables = [n for n, h in self._headers if h == header and start < n < end]
        if index < len(subtables):
            return subtables[index]
        seen = -1
        for number in range(start, end):
            seen += self._lines[number].count("{")
            if seen >= index:
                return number
        return start


# ------------------------------------------------------------------- loading


class _Loader:
    """One file being loaded: turns value problems into located ConfigErrors."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.base = path.parent
        self.lines = _LineFinder(text)

    def error(self, message: str, key: str, *where: str | int) -> ConfigError:
        return ConfigError(message, key=key, source=str(self.path), line=self.lines.find(*where))

    def table(self, data: Mapping[str, object], name: str) -> Mapping[str, object]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.error("must be a table", name, name)
        return value

    def settings(self, cls: type[Any], table: str, data: Mapping[str, object]) -> Any:
        hints = setting_types(cls)
        values: dict[str, object] = {}
        for name, raw in data.items():
            if name not in hints:
                known = ", ".join(hints)
                raise self.error(f"unknown key (known: {known})", f"{table}.{name}", table, name)
            try:
                values[name] = _setting_value(name, raw, hints[name], self.base)
            except _Invalid as exc:
                raise self.error(str(exc), f"{table}.{name}", table, name) from None
        return cls(**values)

    def users(self, raw: object) -> tuple[User, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or not all(isinstance(u, dict) for u in raw):
            raise self.error("must be an array of tables ([[users]])", "users", "users")
        users = tuple(self.user(index, entry) for index, entry in enumerate(raw))
        self.check_unique(users)
        return users

    def check_unique(self, users: tuple[User, ...]) -> None:
        seen: set[str | None] = set()
        for index, user in enumerate(users):
            if user.login in seen:
                what = (
                    "more than one anonymous user (a user without login)"
                    if user.login is None
                    else f"duplicate login {user.login!r}"
                )
                raise self.error(what, f"users[{index}].login", "users", index, "login")
            seen.add(user.login)

    def user(self, index: int, data: Mapping[str, object]) -> User:
        hints = setting_types(User)
        kwargs: dict[str, Any] = {}
        for name, raw in data.items():
            key = f"users[{index}].{name}"
            if name not in _USER_KEYS:
                known = ", ".join(sorted(_USER_KEYS))
                raise self.error(f"unknown key (known: {known})", key, "users", index, name)
            try:
                kwargs[name] = self.user_value(index, name, raw, hints)
            except _Invalid as exc:
                raise self.error(str(exc), key, "users", index, name) from None
        if "password" in kwargs and "password_hash" in kwargs:
            key = f"users[{index}].password_hash"
            raise self.error("give password or password_hash, not both", key, "users", index)
        return User(**kwargs)

    def user_value(self, index: int, name: str, raw: object, hints: dict[str, Any]) -> object:
        if name == "permissions":
            return self.permissions(index, raw)
        if name in ("home_path",):
            return _virtual_path(_convert(raw, str))
        if name == "login":
            value = _convert(raw, str)
            _check_word(str(value))
            return value
        if name == "password_hash":
            value = _convert(raw, str)
            if not is_valid_hash(str(value)):
                raise _Invalid("is not a hash printed by `ftp-cluster hash-password`")
            return value
        return _setting_value(name, raw, hints[name], self.base)

    def permissions(self, index: int, raw: object) -> tuple[Permission, ...]:
        if not isinstance(raw, list):
            raise _Invalid("must be a list of {path, readable, writable} tables")
        return tuple(self.permission(index, n, entry) for n, entry in enumerate(raw))

    def permission(self, index: int, number: int, raw: object) -> Permission:
        key = f"users[{index}].permissions[{number}]"
        where = ("users", index, "permissions", number)
        if not isinstance(raw, dict):
            raise self.error("must be a table {path, readable, writable}", key, *where)
        unknown = set(raw) - _PERMISSION_KEYS
        if unknown:
            raise self.error(
                f"unknown key {min(unknown)!r} (known: path, readable, writable)", key, *where
            )
        try:
            path = _virtual_path(_convert(raw.get("path", "/"), str))
            readable = _convert(raw.get("readable", True), bool)
            writable = _convert(raw.get("writable", True), bool)
        except _Invalid as exc:
            raise self.error(str(exc), key, *where) from None
        return Permission(path, readable=bool(readable), writable=bool(writable))


def _virtual_path(value: object) -> PurePosixPath:
    text = str(value)
    if not text.startswith("/"):
        raise _Invalid(f"must be an absolute virtual path (starting with '/'), got {text!r}")
    return PurePosixPath(text)


def load_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read and validate a TOML configuration file; raise :class:`ConfigError`."""
    file = Path(path).expanduser().absolute()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", source=str(file), line=None) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(file), line=None) from None
    loader = _Loader(file, text)
    for name in data:
        if name not in ("server", "redis", "users"):
            message = "unknown table or key (known: [server], [redis], [[users]])"
            raise loader.error(message, name, name)
    server = loader.settings(ServerSettings, "server", loader.table(data, "server"))
    redis = loader.settings(RedisSettings, "redis", loader.table(data, "redis"))
    users = loader.users(data.get("users"))
    if "root" not in loader.table(data, "server"):
        server = dataclasses.replace(server, root=Path.cwd())
    return ClusterConfig(server=server, redis=redis, users=users, source=file)


def apply_overrides(config: ClusterConfig, overrides: Mapping[str, object]) -> ClusterConfig:
    """Return ``config`` with settings replaced, e.g. ``{"server.port": 21}``.

    Values are checked like the file's (relative paths against the current
    directory); a ``None`` value leaves the setting alone, so an argparse
    namespace can be passed through as is.
    """
    sections: dict[str, dict[str, Any]] = {"server": {}, "redis": {}}
    classes: dict[str, type[Any]] = {"server": ServerSettings, "redis": RedisSettings}
    for dotted, raw in overrides.items():
        if raw is None:
            continue
        section, _, name = dotted.partition(".")
        hints = setting_types(classes[section]) if section in classes else {}
        if name not in hints:
            raise ConfigError("unknown setting", key=dotted, source="command line", line=None)
        text = str(raw) if isinstance(raw, Path) else raw
        try:
            sections[section][name] = _setting_value(name, text, hints[name], Path.cwd())
        except _Invalid as exc:
            raise ConfigError(str(exc), key=dotted, source="command line", line=None) from None
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, **sections["server"]),
        redis=dataclasses.replace(config.redis, **sections["redis"]),
    )
