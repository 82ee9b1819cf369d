"""``[accounts]`` and password hashes in the file: what loads, and errors that hide the hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftp_cluster.shared.config import ConfigError, apply_overrides, load_config
from ftp_cluster.shared.passwords import SCHEMES, hash_password


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "ftp.toml"
    path.write_text(body)
    return path


def test_cache_seconds_defaults_to_five_and_loads(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).accounts.cache_seconds == 5.0
    config = load_config(write(tmp_path, "[accounts]\ncache_seconds = 0\n"))
    assert config.accounts.cache_seconds == 0.0
    again = apply_overrides(config, {"accounts.cache_seconds": 2.5})
    assert again.accounts.cache_seconds == 2.5


def test_a_negative_cache_seconds_names_the_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[accounts]\n\ncache_seconds = -1\n"))
    assert caught.value.key == "accounts.cache_seconds" and caught.value.line == 3


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_loads_as_a_password_hash(tmp_path: Path, scheme: str) -> None:
    encoded = hash_password("Config-Pass-3318", scheme)  # type: ignore[arg-type]
    config = load_config(write(tmp_path, f'[[users]]\nlogin = "a"\npassword_hash = "{encoded}"\n'))
    assert config.users[0].check_password("Config-Pass-3318")
    assert not config.users[0].check_password("Config-Pass-3319")


@pytest.mark.parametrize(
    "encoded",
    [
        "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",  # MD5-crypt: not supported
        "$2b$31$" + "Q" * 53,  # bcrypt at a cost of days per login
        "$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # 4 GiB
    ],
)
def test_an_unsupported_hash_is_refused_without_showing_it(tmp_path: Path, encoded: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f'[[users]]\nlogin = "a"\npassword_hash = "{encoded}"\n'))
    error = str(caught.value)
    assert caught.value.key == "users[0].password_hash" and caught.value.line == 3
    assert "argon2id" in error and "bcrypt" in error  # it says what would do
    assert encoded not in error and encoded[8:20] not in error
