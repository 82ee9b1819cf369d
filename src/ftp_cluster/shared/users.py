"""Users and permissions, with aioftp's names and semantics.

A :class:`User` without a login is the anonymous account: it accepts any login
name that no other user has. A user whose password is ``None`` accepts any
password. Permissions resolve by the longest matching virtual path prefix,
compared component by component (``/pub`` covers ``/pub/x`` but not ``/public``).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ftp_cluster.shared.fields import (
    Invalid,
    LimitSettings,
    absolute_path,
    at_least,
    setting,
    word,
)
from ftp_cluster.shared.limits.base import QuotaLimits
from ftp_cluster.shared.passwords import as_bytes, is_valid_hash, verify_password

__all__ = ["NO_ACCESS", "Permission", "User", "UserTable"]


def _virtual(path: str | PurePosixPath) -> PurePosixPath:
    p = PurePosixPath(path)
    if not p.is_absolute():
        raise ValueError(f"virtual path must be absolute: {str(path)!r}")
    return p


@dataclass(frozen=True, init=False)
class Permission:
    """Read/write rights on a virtual path and everything below it."""

    path: PurePosixPath = setting(
        PurePosixPath("/"), "virtual path; covers everything below it", check=absolute_path
    )
    readable: bool = setting(True, "may list and download")
    writable: bool = setting(True, "may upload, rename and delete")

    def __init__(
        self, path: str | PurePosixPath = "/", *, readable: bool = True, writable: bool = True
    ) -> None:
        object.__setattr__(self, "path", _virtual(path))
        object.__setattr__(self, "readable", readable)
        object.__setattr__(self, "writable", writable)

    def covers(self, path: PurePosixPath) -> bool:
        """True if ``path`` is this permission's path or lies below it."""
        return path == self.path or self.path in path.parents


NO_ACCESS = Permission("/", readable=False, writable=False)


def _password_hash(value: str) -> None:
    if not is_valid_hash(value):
        raise Invalid(
            "is not a supported password hash (argon2id, bcrypt $2a$/$2b$/$2y$, "
            "SHA-512/SHA-256-crypt $6$/$5$, scrypt) with affordable costs"
        )


@dataclass(frozen=True, init=False)
class User(LimitSettings):
    """An account: credentials, home, permissions and per-user limits.

    ``base_path`` is the real directory behind the virtual ``/`` for this user;
    ``None`` means "the server's root" (the current directory for a library
    server, ``[server] root`` for a cluster). The limits
    (``maximum_connections`` and the four speed limits) are those of
    :class:`~ftp_cluster.shared.fields.LimitSettings`, counting this user's
    sessions; ``quota_bytes`` and ``quota_files`` are the disk quota of what
    lies under ``base_path`` (see :meth:`quota_limits`). Every field made by
    ``setting`` is a key of ``[[users]]``. The password and its hash are left
    out of ``repr`` (and so of ``str``).
    """

    login: str | None = setting(
        None,
        "the login name; a user without one is the anonymous account, which takes any name "
        "no other user has",
        check=word,
    )
    password: str | None = setting(
        None,
        "plain-text password; neither password nor password_hash: any password is accepted",
        secret=True,
    )
    password_hash: str | None = setting(
        None,
        "hash of the password: argon2id, bcrypt ($2a$, $2b$, $2y$), SHA-512-crypt or "
        "SHA-256-crypt ($6$, $5$), or scrypt; `ftp-cluster hash-password` prints one",
        secret=True,
        check=_password_hash,
    )
    base_path: Path | None = setting(
        None, "real directory behind this user's / (default: [server] root)", directory=True
    )
    home_path: PurePosixPath = setting(
        PurePosixPath("/"),
        "virtual directory a login starts in (need not exist yet)",
        check=absolute_path,
    )
    permissions: tuple[Permission, ...] = setting(
        (Permission(),),
        "list of { path, readable, writable }; the longest matching path prefix decides; "
        "no match: no access",
    )
    quota_bytes: int | None = setting(
        None,
        "disk quota in bytes, cluster-wide; 0: unlimited; absent: [server] default_quota_bytes",
        check=at_least(0),
    )
    quota_files: int | None = setting(
        None,
        "quota of regular files; 0: unlimited; absent: [server] default_quota_files",
        check=at_least(0),
    )
    _ordered: tuple[Permission, ...] = field(default=(), repr=False, compare=False)

    def __init__(
        self,
        login: str | None = None,
        password: str | None = None,
        *,
        password_hash: str | None = None,
        base_path: str | Path | None = None,
        home_path: str | PurePosixPath = "/",
        permissions: Iterable[Permission] | None = None,
        maximum_connections: int | None = None,
        read_speed_limit: int | None = None,
        write_speed_limit: int | None = None,
        read_speed_limit_per_connection: int | None = None,
        write_speed_limit_per_connection: int | None = None,
        quota_bytes: int | None = None,
        quota_files: int | None = None,
    ) -> None:
        # The keywords are aioftp's API, hence spelled out; each one sets the
        # field of its name, as is or normalised below (tests pin the match).
        given = locals()
        perms = tuple(permissions) if permissions is not None else (Permission(),)
        normalised: dict[str, object] = {
            "base_path": Path(base_path) if base_path is not None else None,
            "home_path": _virtual(home_path),
            "permissions": perms,
            # Longest path first, so the first cover found is the most specific.
            "_ordered": tuple(sorted(perms, key=lambda p: len(p.path.parts), reverse=True)),
        }
        for item in dataclasses.fields(self):
            name = item.name
            object.__setattr__(self, name, normalised[name] if name in normalised else given[name])

    @property
    def is_anonymous(self) -> bool:
        return self.login is None

    @property
    def key(self) -> str:
        """Stable name for per-user limits; every anonymous login shares one."""
        return self.login if self.login is not None else "<anonymous>"

    def quota_limits(self, default_bytes: int | None, default_files: int | None) -> QuotaLimits:
        """This user's disk quota: its own where given (0: unlimited), else the defaults."""
        quota_bytes = default_bytes if self.quota_bytes is None else self.quota_bytes or None
        quota_files = default_files if self.quota_files is None else self.quota_files or None
        return QuotaLimits(quota_bytes, quota_files)

    def permission_for(self, path: PurePosixPath) -> Permission:
        """The most specific permission covering ``path``, or no access at all."""
        for permission in self._ordered:
            if permission.covers(path):
                return permission
        return NO_ACCESS

    def check_password(self, candidate: str) -> bool:
        """Constant-time check; a user with neither password nor hash accepts any.

        ``candidate`` is what the client sent, decoded as UTF-8 with
        ``surrogateescape``: bytes that are not UTF-8 stay lone surrogates.
        Both sides are compared as the bytes they stand for, so such a
        password is refused (or matches a configured one of the same bytes)
        rather than raising.
        """
        if self.password_hash is not None:
            return verify_password(candidate, self.password_hash)
        if self.password is None:
            return True
        return hmac.compare_digest(as_bytes(candidate), as_bytes(self.password))


class UserTable:
    """Login-name lookup: exact logins first, then the anonymous account."""

    def __init__(self, users: Sequence[User]) -> None:
        self._by_login: dict[str, User] = {}
        self._anonymous: User | None = None
        for user in users:
            if user.login is None:
                if self._anonymous is not None:
                    raise ValueError("more than one anonymous user (a user without login)")
                self._anonymous = user
            elif user.login in self._by_login:
                raise ValueError(f"duplicate login {user.login!r}")
            else:
                self._by_login[user.login] = user

    def find(self, login: str) -> User | None:
        return self._by_login.get(login, self._anonymous)

    def named(self, login: str) -> User | None:
        """The user whose login is exactly ``login`` (never the anonymous account)."""
        return self._by_login.get(login)

    @property
    def anonymous(self) -> User | None:
        return self._anonymous

    @property
    def users(self) -> tuple[User, ...]:
        anonymous = (self._anonymous,) if self._anonymous is not None else ()
        return (*self._by_login.values(), *anonymous)
