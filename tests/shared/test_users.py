"""Users: secrets kept out of repr, limits and keywords from one definition."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from ftp_cluster.shared.config import setting_specs
from ftp_cluster.shared.fields import LimitSettings, spec_of
from ftp_cluster.shared.passwords import hash_password
from ftp_cluster.shared.settings import ClusterConfig, ServerSettings
from ftp_cluster.shared.users import Permission, User


def test_repr_and_str_hold_no_secret() -> None:
    encoded = hash_password("s3cret-plain", log2_n=4)
    users = (User("alice", "s3cret-plain"), User("bob", password_hash=encoded))
    config = ClusterConfig(users=users)
    for text in (*map(repr, users), *map(str, users), repr(config), str(config)):
        assert "s3cret-plain" not in text
        assert encoded not in text and encoded.split("$")[-1] not in text
    assert "alice" in repr(users[0]) and "bob" in str(config)  # the rest is still shown


# ------------------------------------------------------------ one definition


LIMITS = [field.name for field in dataclasses.fields(LimitSettings)]


def test_server_and_users_share_the_limit_fields() -> None:
    assert LIMITS == [
        "maximum_connections",
        "read_speed_limit",
        "write_speed_limit",
        "read_speed_limit_per_connection",
        "write_speed_limit_per_connection",
    ]
    for cls in (ServerSettings, User):
        fields = {field.name: field for field in dataclasses.fields(cls)}
        for shared in dataclasses.fields(LimitSettings):
            assert spec_of(fields[shared.name]) is spec_of(shared)  # the same definition


def test_user_keywords_are_aioftps_and_match_the_fields() -> None:
    parameters = inspect.signature(User).parameters
    assert list(parameters)[:2] == ["login", "password"]
    keyword_only = [n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert set(keyword_only) == set(setting_specs(User)) - {"login", "password"}
    for name in LIMITS:
        assert parameters[name].default is None
    user = User("a", "b", maximum_connections=3, write_speed_limit_per_connection=7)
    assert (user.maximum_connections, user.write_speed_limit_per_connection) == (3, 7)
    assert user.read_speed_limit is None


def test_user_normalises_paths_and_orders_permissions() -> None:
    user = User(
        base_path="/srv",
        home_path="/pub",
        permissions=[Permission("/", writable=False), Permission("/pub/in")],
    )
    assert user.base_path == Path("/srv")
    assert user.permission_for(user.home_path / "in" / "x").writable
    assert not user.permission_for(user.home_path).writable
    with pytest.raises(ValueError, match="absolute"):
        User(home_path="relative")
