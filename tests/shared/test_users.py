"""Users: passwords compared as the client's bytes, secrets kept out of repr, one definition."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from ftp_cluster.shared.config import setting_specs
from ftp_cluster.shared.fields import LimitSettings, spec_of
from ftp_cluster.shared.passwords import hash_password, is_valid_hash, verify_password
from ftp_cluster.shared.settings import ClusterConfig, ServerSettings
from ftp_cluster.shared.users import Permission, User


def from_wire(data: bytes) -> str:
    """What the protocol hands to ``check_password`` for the bytes a client sent."""
    return data.decode("utf-8", "surrogateescape")


UNDECODABLE = from_wire(b"ab\xbbcd")  # not UTF-8: a lone surrogate stands for \xbb


def test_undecodable_candidate_is_refused_without_an_exception() -> None:
    assert "\udcbb" in UNDECODABLE
    plain = User("alice", "abcd")
    hashed = User("alice", password_hash=hash_password("abcd", log2_n=4))
    assert plain.check_password(UNDECODABLE) is False
    assert hashed.check_password(UNDECODABLE) is False
    assert plain.check_password("abcd") and hashed.check_password("abcd")


def test_a_configured_password_of_the_same_bytes_matches() -> None:
    # A library user may configure a password that is not UTF-8, the same way.
    assert User("alice", UNDECODABLE).check_password(from_wire(b"ab\xbbcd"))
    assert not User("alice", UNDECODABLE).check_password(from_wire(b"ab\xbccd"))
    encoded = hash_password(UNDECODABLE, log2_n=4)
    assert verify_password(from_wire(b"ab\xbbcd"), encoded)
    assert not verify_password("abcd", encoded)


@pytest.mark.parametrize("password", ["pässwörd", "пароль", "密码🔑"])
def test_non_ascii_password_is_accepted_as_utf8(password: str) -> None:
    sent = from_wire(password.encode("utf-8"))
    assert User("alice", password).check_password(sent)
    assert User("alice", password_hash=hash_password(password, log2_n=4)).check_password(sent)
    assert not User("alice", password).check_password(
        from_wire(password.encode("latin-1", "replace"))
    )


def test_no_password_accepts_any_even_undecodable() -> None:
    assert User("alice").check_password(UNDECODABLE)


def test_repr_and_str_hold_no_secret() -> None:
    encoded = hash_password("s3cret-plain", log2_n=4)
    users = (User("alice", "s3cret-plain"), User("bob", password_hash=encoded))
    config = ClusterConfig(users=users)
    for text in (*map(repr, users), *map(str, users), repr(config), str(config)):
        assert "s3cret-plain" not in text
        assert encoded not in text and encoded.split("$")[-1] not in text
    assert "alice" in repr(users[0]) and "bob" in str(config)  # the rest is still shown


@pytest.mark.parametrize(
    "encoded",
    [
        "scrypt$14$8$1$c2FsdA==",  # a part missing
        "scrypt$14$x$1$c2FsdA==$ZGlnZXN0",  # r not a number
        "scrypt$14$8$1$c2F!dA==$ZGlnZXN0",  # not base64
        "scrypt$18$8$1$c2FsdA==$ZGlnZXN0",  # needs more memory than scrypt is given
        "scrypt$16$1$1$c2FsdA==$ZGlnZXN0",  # n too large for r = 1
        "md5$x",
    ],
)
def test_a_hash_that_could_never_be_checked_is_invalid(encoded: str) -> None:
    assert not is_valid_hash(encoded)
    assert verify_password("x", encoded) is False  # and checking it does not raise


def test_hash_password_output_is_valid() -> None:
    assert is_valid_hash(hash_password("x"))  # the default cost
    assert is_valid_hash(hash_password("x", log2_n=4))


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
