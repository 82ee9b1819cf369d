"""Quota settings: per-user ``quota_bytes``/``quota_files`` and the server's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftp_cluster.shared.config import ConfigError, load_config
from ftp_cluster.shared.limits.base import QuotaLimits
from tests.shared.config_files import write


def test_user_quota_overrides_the_server_default(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "[server]\ndefault_quota_bytes = 1000\ndefault_quota_files = 0\n"
            '[[users]]\nlogin = "own"\nquota_bytes = 50\nquota_files = 2\n'
            '[[users]]\nlogin = "exempt"\nquota_bytes = 0\n'
            '[[users]]\nlogin = "default"\n',
        )
    )
    server = config.server
    assert server.default_quota_bytes == 1000 and server.default_quota_files is None
    defaults = (server.default_quota_bytes, server.default_quota_files)
    limits = {user.login: user.quota_limits(*defaults) for user in config.users}
    assert limits == {
        "own": QuotaLimits(50, 2),
        "exempt": QuotaLimits(None, None),  # its own 0: unlimited
        "default": QuotaLimits(1000, None),
    }


def test_a_negative_quota_is_refused_with_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[[users]]\nlogin = "a"\nquota_files = -1\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "users[0].quota_files" in message and "must be at least 0" in message
    assert ":3" in message or "line 3" in message
