"""``[logging]`` and ``[metrics]`` in the configuration file and on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftp_cluster.shared.config import ConfigError, apply_overrides, load_config
from ftp_cluster.shared.settings import ClusterConfig


def load(tmp_path: Path, text: str) -> ClusterConfig:
    path = tmp_path / "ftp.toml"
    path.write_text(text)
    return load_config(path)


def test_the_issues_examples_load(tmp_path: Path) -> None:
    log = tmp_path / "xferlog"
    config = load(
        tmp_path,
        f'[metrics]\nlisten = "127.0.0.1:9121"\n\n'
        f'[logging]\nformat = "json"\ntransfer_log = {json.dumps(str(log))}\n',
    )
    assert config.metrics.address == ("127.0.0.1", 9121)
    assert (config.logging.format, config.logging.transfer_log) == ("json", log)


def test_defaults_are_text_and_no_endpoint_nor_transfer_log(tmp_path: Path) -> None:
    config = load(tmp_path, "[server]\n")
    assert config.metrics.address is None
    assert (config.logging.format, config.logging.transfer_log) == ("text", None)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[logging]\nformat = "xml"\n', "logging.format", "must be one of 'text', 'json'"),
        ('[logging]\ntransfer_log = "xferlog"\n', "logging.transfer_log", "absolute path"),
        ('[logging]\ntransfer_log = "/nonexistent-dir/x"\n', "logging.transfer_log", "exist"),
        ('[logging]\ntransfer_log = "/tmp"\n', "logging.transfer_log", "is a directory"),
        ('[logging]\nlevel = "DEBUG"\n', "logging.level", "unknown key"),
        ('[metrics]\nlisten = "9121"\n', "metrics.listen", "HOST:PORT"),
        ('[metrics]\nlisten = "localhost:9121"\n', "metrics.listen", "IP address"),
        ('[metrics]\nlisten = "127.0.0.1:99999"\n', "metrics.listen", "HOST:PORT"),
    ],
)
def test_bad_values_name_the_key_and_line(tmp_path: Path, text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "# observability\n" + text)
    assert caught.value.key == key
    assert words in caught.value.reason
    assert caught.value.line is not None and caught.value.line >= 2


def test_flags_override_the_file(tmp_path: Path) -> None:
    config = load(tmp_path, '[metrics]\nlisten = "127.0.0.1:9121"\n')
    config = apply_overrides(config, {"metrics.listen": "[::1]:9200", "logging.format": "json"})
    assert config.metrics.address == ("::1", 9200)
    assert config.logging.format == "json"
    with pytest.raises(ConfigError, match=r"logging\.transfer_log"):
        apply_overrides(config, {"logging.transfer_log": "relative/xferlog"})
