"""Configuration files for the config tests: writing one, and checking where an error points."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftp_cluster.shared.config import ConfigError, load_config


def write(tmp_path: Path, body: str) -> Path:
    """``body`` as ``tmp_path/ftp.toml``."""
    path = tmp_path / "ftp.toml"
    path.write_text(body)
    return path


def assert_error_points_at(path: Path, key: str, line: int, words: str) -> None:
    """Loading ``path`` fails naming ``key``, the file and ``line``, with ``words`` in the text."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.key, error.source, error.line) == (key, str(path), line), error
    assert words in str(error)
