"""How a setting is defined, and the limits the server and every user share.

A setting is a dataclass field made by :func:`setting`: its metadata holds a
:class:`Spec` with everything the TOML loader, the command line and the docs
need to know beyond the field's type - its help, whether it is a flag, the
check its value must pass, whether the file's ``0`` stands for ``None``,
whether it is a directory, whether it is a secret. Nothing else keeps lists
of setting names: a rule belongs to the field it is about.

:class:`LimitSettings` holds the limits that ``[server]`` and ``[[users]]``
both have. :class:`~ftp_cluster.shared.settings.ServerSettings` and
:class:`~ftp_cluster.shared.users.User` derive from it, so those fields are
defined once and keep their flat names (``settings.read_speed_limit``,
``user.read_speed_limit``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

__all__ = [
    "Check",
    "Invalid",
    "LimitSettings",
    "Spec",
    "absolute_path",
    "at_least",
    "between",
    "ipv4",
    "limit",
    "networks",
    "port_range",
    "setting",
    "single_line",
    "spec_of",
    "word",
]

#: Raises :class:`Invalid` if a (converted) value is not acceptable.
Check = Callable[[Any], None]

_METADATA_KEY = "setting"
_NOT_GIVEN = object()


class Invalid(ValueError):
    """A value that a type or a check refused; the caller adds key, file and line.

    ``value`` is kept apart from the reason so that a secret's value can be
    left out of the message (:meth:`describe`).
    """

    def __init__(self, reason: str, value: object = _NOT_GIVEN) -> None:
        self.reason = reason
        self.value = value
        super().__init__(self.describe())

    def describe(self, *, secret: bool = False) -> str:
        if self.value is _NOT_GIVEN:
            return self.reason
        if secret:
            return f"{self.reason} (the value is not shown: it is a secret)"
        return f"{self.reason}, got {self.value!r}"


@dataclass(frozen=True, slots=True)
class Spec:
    """What a settings field's metadata says about it.

    ``zero_is_none``: the config file (and the command line) spell ``None``
    as ``0`` - TOML has no null - so ``0`` means unlimited or no timeout.
    ``directory``: a real directory that must exist; a relative one is
    relative to the config file (to the current directory on the command
    line). ``file``: likewise, a readable file. ``secret``: never shown,
    neither in ``repr`` nor in an error.
    """

    help: str
    cli: bool = False
    check: Check | None = None
    zero_is_none: bool = False
    directory: bool = False
    file: bool = False
    secret: bool = False


def setting(
    default: Any,
    help: str,
    *,
    cli: bool = False,
    check: Check | None = None,
    zero_is_none: bool = False,
    directory: bool = False,
    file: bool = False,
    secret: bool = False,
) -> Any:
    """A dataclass field for a setting, its :class:`Spec` in the metadata."""
    spec = Spec(help, cli, check, zero_is_none, directory, file, secret)
    return dataclasses.field(default=default, repr=not secret, metadata={_METADATA_KEY: spec})


def spec_of(field: dataclasses.Field[Any]) -> Spec | None:
    """The field's :class:`Spec`; ``None`` for a field that is no setting."""
    spec = field.metadata.get(_METADATA_KEY)
    return spec if isinstance(spec, Spec) else None


# -------------------------------------------------------------------- checks


def between(low: float, high: float) -> Check:
    """A number from ``low`` to ``high``, both included."""

    def check(value: float) -> None:
        if not low <= value <= high:
            raise Invalid(f"must be between {low} and {high}", value)

    return check


def at_least(low: float) -> Check:
    """A number no smaller than ``low``."""

    def check(value: float) -> None:
        if value < low:
            raise Invalid(f"must be at least {low}", value)

    return check


def port_range(value: tuple[int, int]) -> None:
    """``[low, high]``: two ports, the first not above the second."""
    low, high = value
    between(1, 65535)(low)
    between(1, 65535)(high)
    if low > high:
        raise Invalid(f"first port must not exceed the second, got [{low}, {high}]")


def ipv4(value: str) -> None:
    """An IPv4 address (what a PASV reply can carry)."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise Invalid("must be an IPv4 address (it goes into PASV replies)", value) from None


def networks(value: tuple[str, ...]) -> None:
    """IP networks in CIDR notation (``10.0.0.0/8``, ``::1/128``) or single addresses."""
    for text in value:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise Invalid(
                "must be a list of IP networks (CIDR) such as '10.0.0.0/8'", text
            ) from None


def single_line(value: str) -> None:
    """Text without line breaks (it goes into a reply line)."""
    if "\r" in value or "\n" in value:
        raise Invalid("must be a single line")


def word(value: str) -> None:
    """A non-empty string without white space."""
    if not value or any(c.isspace() for c in value):
        raise Invalid("must be a non-empty word without spaces", value)


def absolute_path(value: PurePosixPath) -> None:
    """A virtual path, which always starts at ``/``."""
    if not value.is_absolute():
        raise Invalid("must be an absolute virtual path (starting with '/')", str(value))


# -------------------------------------------------------------------- limits


def limit(help: str) -> Any:
    """A limit: ``None`` (the file's ``0``) is unlimited, below zero is refused."""
    return setting(None, help, check=at_least(0), zero_is_none=True)


@dataclass(frozen=True)
class LimitSettings:
    """The limits ``[server]`` and every ``[[users]]`` entry both have.

    On the server they count every session; on a user, that user's sessions.
    All are cluster-wide. Speeds are bytes per second; "read" is what the
    server reads (uploads), "write" what it writes (downloads), as in aioftp.
    """

    maximum_connections: int | None = limit("sessions at once, cluster-wide")
    read_speed_limit: int | None = limit("uploads, all sessions together")
    write_speed_limit: int | None = limit("downloads, all sessions together")
    read_speed_limit_per_connection: int | None = limit("uploads, per session")
    write_speed_limit_per_connection: int | None = limit("downloads, per session")
