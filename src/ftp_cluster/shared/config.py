"""Loading and validating the TOML configuration file.

Every key is optional and every value is checked before anything starts: an
unknown key, a wrong type, a missing directory or a value out of range raises
:class:`ConfigError` naming the key, the file and the line. Which keys exist,
their types and their rules all come from the field definitions
(:mod:`ftp_cluster.shared.settings`, :class:`~ftp_cluster.shared.users.User`,
:class:`~ftp_cluster.shared.users.Permission`; see
:mod:`ftp_cluster.shared.fields`): this module only reads them.

Conventions of the file format: a limit of ``0`` means unlimited (``None``), so
does a timeout of ``0``; relative paths are relative to the file's directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ftp_cluster.shared.fields import Invalid, Spec, spec_of
from ftp_cluster.shared.settings import (
    AccountsSettings,
    ClusterConfig,
    DefenderSettings,
    LoggingSettings,
    MetricsSettings,
    RedisSettings,
    ServerSettings,
    TLSSettings,
)
from ftp_cluster.shared.users import Permission, User

__all__ = [
    "ConfigError",
    "apply_overrides",
    "check_setting",
    "check_tls",
    "load_config",
    "setting_specs",
    "setting_types",
]

log = logging.getLogger("ftp_cluster.config")

_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "redis": RedisSettings,
    "tls": TLSSettings,
    "accounts": AccountsSettings,
    "defender": DefenderSettings,
    "logging": LoggingSettings,
    "metrics": MetricsSettings,
}


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


def setting_types(cls: type[Any]) -> dict[str, Any]:
    """Resolved field annotations of a settings dataclass (``from __future__`` safe)."""
    return typing.get_type_hints(cls)


def setting_specs(cls: type[Any]) -> dict[str, tuple[Spec, Any]]:
    """Every setting of a dataclass: name -> (its :class:`Spec`, its type), in order."""
    hints = setting_types(cls)
    found: dict[str, tuple[Spec, Any]] = {}
    for field in dataclasses.fields(cls):
        spec = spec_of(field)
        if spec is not None:
            found[field.name] = (spec, hints[field.name])
    return found


# -------------------------------------------------------------------- values


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
            raise Invalid(f"must be one of {allowed}", value)
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list):
            raise Invalid("must be a list", value)
        return tuple(_convert(v, args[0]) for v in value)
    if origin is tuple:
        if not isinstance(value, list) or len(value) != len(args):
            raise Invalid(f"must be a list of {len(args)} values", value)
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
    return _convert_scalar(value, tp)


def _convert_scalar(value: object, tp: Any) -> object:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Invalid("must be true or false", value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Invalid("must be an integer", value)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise Invalid("must be a number", value)
    if tp in (str, Path, PurePosixPath):
        if isinstance(value, str):
            return value if tp is str else tp(value)
        raise Invalid("must be a string", value)
    raise TypeError(f"unsupported setting type {tp!r}")  # a definition's fault, not the user's


def _directory(value: Path, base: Path) -> Path:
    path = (base / value.expanduser()).resolve()
    if not path.exists():
        raise Invalid(f"directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise Invalid(f"{str(path)!r} is not a directory")
    return path


def _file(value: Path, base: Path) -> Path:
    path = (base / value.expanduser()).resolve()
    if not path.is_file():
        raise Invalid(f"file {str(path)!r} does not exist")
    if not os.access(path, os.R_OK):
        raise Invalid(f"file {str(path)!r} is not readable")
    return path


def _value(spec: Spec, raw: object, tp: Any, base: Path) -> object:
    """Convert and check one value as its field's :class:`Spec` says."""
    value = _convert(raw, tp)
    if spec.directory:
        assert isinstance(value, Path)
        value = _directory(value, base)
    if spec.file:
        assert isinstance(value, Path)
        value = _file(value, base)
    if spec.check is not None:
        spec.check(value)
    if spec.zero_is_none and value == 0:
        return None
    return value


def check_setting(cls: type[Any], name: str, raw: object, *, base: Path | None = None) -> object:
    """Field ``name`` of ``cls`` set to ``raw`` (TOML-like): the value it gets.

    Raises :class:`~ftp_cluster.shared.fields.Invalid`; relative directories
    are taken against ``base`` (default: the current directory).
    """
    spec, tp = _specs(cls)[name]
    return _value(spec, raw, tp, base if base is not None else Path.cwd())


# Resolving the annotations costs ~50 us a class; a database row is checked
# column by column at every uncached login, so they are resolved once.
_SPECS: dict[object, dict[str, tuple[Spec, Any]]] = {}


def _specs(cls: type[Any]) -> dict[str, tuple[Spec, Any]]:
    found = _SPECS.get(cls)
    if found is None:
        found = _SPECS[cls] = setting_specs(cls)
    return found


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

_PERMISSIONS = tuple[Permission, ...]


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
        specs = setting_specs(cls)
        values: dict[str, object] = {}
        for name, raw in data.items():
            key = f"{table}.{name}"
            if name not in specs:
                raise self.error(f"unknown key (known: {', '.join(specs)})", key, table, name)
            spec, tp = specs[name]
            try:
                values[name] = _value(spec, raw, tp, self.base)
            except Invalid as exc:
                raise self.error(exc.describe(secret=spec.secret), key, table, name) from None
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
        specs = setting_specs(User)
        kwargs: dict[str, Any] = {}
        for name, raw in data.items():
            key = f"users[{index}].{name}"
            if name not in specs:
                known = ", ".join(sorted(specs))
                raise self.error(f"unknown key (known: {known})", key, "users", index, name)
            spec, tp = specs[name]
            try:
                if tp == _PERMISSIONS:
                    kwargs[name] = self.permissions(index, raw)
                else:
                    kwargs[name] = _value(spec, raw, tp, self.base)
            except Invalid as exc:
                message = exc.describe(secret=spec.secret)
                raise self.error(message, key, "users", index, name) from None
        if "password" in kwargs and "password_hash" in kwargs:
            key = f"users[{index}].password_hash"
            raise self.error("give password or password_hash, not both", key, "users", index)
        return User(**kwargs)

    def permissions(self, index: int, raw: object) -> tuple[Permission, ...]:
        if not isinstance(raw, list):
            raise Invalid("must be a list of {path, readable, writable} tables")
        return tuple(self.permission(index, n, entry) for n, entry in enumerate(raw))

    def permission(self, index: int, number: int, raw: object) -> Permission:
        key = f"users[{index}].permissions[{number}]"
        where = ("users", index, "permissions", number)
        specs = setting_specs(Permission)
        known = ", ".join(specs)
        if not isinstance(raw, dict):
            raise self.error(f"must be a table {{{known}}}", key, *where)
        unknown = set(raw) - set(specs)
        if unknown:
            raise self.error(f"unknown key {min(unknown)!r} (known: {known})", key, *where)
        values: dict[str, Any] = {}
        for name, value in raw.items():
            spec, tp = specs[name]
            try:
                values[name] = _value(spec, value, tp, self.base)
            except Invalid as exc:
                raise self.error(f"{name}: {exc.describe()}", key, *where) from None
        return Permission(**values)


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
        if name not in (*_SECTIONS, "users"):
            known = ", ".join(f"[{section}]" for section in _SECTIONS)
            message = f"unknown table or key (known: {known}, [[users]])"
            raise loader.error(message, name, name)
    server = loader.settings(ServerSettings, "server", loader.table(data, "server"))
    redis = loader.settings(RedisSettings, "redis", loader.table(data, "redis"))
    tls = loader.settings(TLSSettings, "tls", loader.table(data, "tls"))
    accounts = loader.settings(AccountsSettings, "accounts", loader.table(data, "accounts"))
    defender = loader.settings(DefenderSettings, "defender", loader.table(data, "defender"))
    logging_ = loader.settings(LoggingSettings, "logging", loader.table(data, "logging"))
    metrics = loader.settings(MetricsSettings, "metrics", loader.table(data, "metrics"))
    users = loader.users(data.get("users"))
    if "root" not in loader.table(data, "server"):
        server = dataclasses.replace(server, root=Path.cwd())
    try:
        check_tls(tls)
    except Invalid as exc:
        where = "private_key" if "private_key" in loader.table(data, "tls") else "certificate"
        raise loader.error(exc.describe(), f"tls.{where}", "tls", where) from None
    return ClusterConfig(
        server=server,
        redis=redis,
        tls=tls,
        defender=defender,
        accounts=accounts,
        logging=logging_,
        metrics=metrics,
        users=users,
        source=file,
    )


def check_tls(tls: TLSSettings) -> None:
    """The ``[tls]`` table as a whole: both files or neither, a key that fits.

    An expired certificate is logged loudly, not refused: a server that does
    not start is worse than one with a warning the operator sees.
    """
    if tls.certificate is None and tls.private_key is None:
        if tls.implicit_port is not None or tls.required != "none" or tls.client_ca is not None:
            raise Invalid("[tls] needs certificate and private_key")
        return
    if tls.certificate is None or tls.private_key is None:
        raise Invalid("certificate and private_key go together")
    from ftp_cluster.worker.tls import (  # noqa: PLC0415 - the ssl module only when used
        CertificateError,
        TLSOptions,
        expiry_warning,
        make_context,
    )

    options = TLSOptions(tls.certificate, tls.private_key, tls.minimum_version, tls.client_ca)
    try:
        make_context(options)
    except CertificateError as error:
        raise Invalid(str(error)) from None
    warning = expiry_warning(tls.certificate)
    if warning is not None:
        log.warning("WARNING: %s; clients will refuse it", warning)


# ----------------------------------------------------------------- overrides


def apply_overrides(config: ClusterConfig, overrides: Mapping[str, object]) -> ClusterConfig:
    """Return ``config`` with settings replaced, e.g. ``{"server.port": 21}``.

    Values are checked like the file's (relative paths against the current
    directory); a ``None`` value leaves the setting alone, so an argparse
    namespace can be passed through as is. The key ``"users"`` holds
    accounts (a sequence of :class:`User`) added to the file's; one whose
    login the file has too replaces the file's, with a warning.
    """
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    users = config.users
    for dotted, raw in overrides.items():
        if raw is None:
            continue
        if dotted == "users":
            users = _with_users(users, _user_list(raw))
            continue
        section, _, name = dotted.partition(".")
        specs = setting_specs(_SECTIONS[section]) if section in _SECTIONS else {}
        if name not in specs:
            raise ConfigError("unknown setting", key=dotted, source="command line", line=None)
        spec, tp = specs[name]
        text = str(raw) if isinstance(raw, Path) else raw
        try:
            sections[section][name] = _value(spec, text, tp, Path.cwd())
        except Invalid as exc:
            message = exc.describe(secret=spec.secret)
            raise ConfigError(message, key=dotted, source="command line", line=None) from None
    tls = dataclasses.replace(config.tls, **sections["tls"])
    if sections["tls"]:
        try:
            check_tls(tls)
        except Invalid as exc:
            raise ConfigError(exc.describe(), key="tls", source="command line", line=None) from None
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, **sections["server"]),
        redis=dataclasses.replace(config.redis, **sections["redis"]),
        tls=tls,
        accounts=dataclasses.replace(config.accounts, **sections["accounts"]),
        defender=dataclasses.replace(config.defender, **sections["defender"]),
        logging=dataclasses.replace(config.logging, **sections["logging"]),
        metrics=dataclasses.replace(config.metrics, **sections["metrics"]),
        users=users,
    )


def _user_list(raw: object) -> tuple[User, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(u, User) for u in raw):
        raise TypeError(f"overrides['users'] must be a sequence of User, not {type(raw)!r}")
    return tuple(raw)


def _with_users(existing: Iterable[User], added: tuple[User, ...]) -> tuple[User, ...]:
    logins: set[str | None] = set()
    for user in added:
        if user.login in logins:
            what = "anonymous user" if user.login is None else f"login {user.login!r}"
            raise ConfigError(f"{what} given twice", key="users", source="command line", line=None)
        logins.add(user.login)
    kept = []
    for user in existing:
        if user.login in logins:
            log.warning(
                "%s is given in the config file and on the command line: the command "
                "line's account is used",
                "the anonymous user" if user.login is None else f"login {user.login!r}",
            )
        else:
            kept.append(user)
    return (*kept, *added)
