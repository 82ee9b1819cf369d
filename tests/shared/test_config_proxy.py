"""``[server] proxy_protocol`` and ``trusted_proxies`` in the configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftp_cluster.shared.config import ConfigError, load_config
from ftp_cluster.shared.settings import ServerSettings


def load(tmp_path: Path, text: str) -> ServerSettings:
    path = tmp_path / "ftp.toml"
    path.write_text(text)
    return load_config(path).server


def test_issue_example_loads(tmp_path: Path) -> None:
    server = load(
        tmp_path,
        '[server]\nproxy_protocol = true\ntrusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]\n',
    )
    assert server.proxy_protocol is True
    assert server.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")


def test_defaults_are_off_and_empty(tmp_path: Path) -> None:
    server = load(tmp_path, "[server]\n")
    assert server.proxy_protocol is False
    assert server.trusted_proxies == ()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('["10.0.0.0/33"]', "IP networks"),
        ('["proxy.example"]', "IP networks"),
        ('"10.0.0.0/8"', "must be a list"),
        ("[8]", "must be a string"),
    ],
)
def test_bad_trusted_proxies_name_key_and_line(tmp_path: Path, value: str, words: str) -> None:
    path = tmp_path / "ftp.toml"
    path.write_text(f"[server]\nproxy_protocol = true\ntrusted_proxies = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "server.trusted_proxies"
    assert caught.value.line == 3
    assert words in str(caught.value)
