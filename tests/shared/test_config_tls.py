"""The ``[tls]`` table: what loads, and errors that name the key, the file and the line."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest
import trustme

from ftp_cluster.shared.config import ConfigError, apply_overrides, load_config
from ftp_cluster.shared.settings import ClusterConfig
from tests.shared.config_files import assert_error_points_at, write


@pytest.fixture
def pem(tmp_path: Path) -> tuple[Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "chain.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    return tmp_path / "chain.pem", tmp_path / "key.pem"


def test_a_tls_table_with_relative_files_loads(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    config = load_config(
        write(
            tmp_path,
            '[tls]\ncertificate = "chain.pem"\nprivate_key = "key.pem"\n'
            'implicit_port = 990\nrequired = "control"\nminimum_version = "TLSv1.3"\n',
        )
    )
    assert config.tls.certificate == pem[0] and config.tls.private_key == pem[1]
    assert config.tls.enabled and config.tls.implicit_port == 990
    assert config.tls.required == "control" and config.tls.session_reuse == "required"
    assert not load_config(write(tmp_path, "")).tls.enabled


CASES = [
    # (file body, the key named, its line, words of the message)
    (
        '[tls]\ncertificate = "missing.pem"\nprivate_key = "key.pem"\n',
        ("tls.certificate", 2, "does not exist"),
    ),
    (
        '[tls]\ncertificate = "chain.pem"\nprivate_key = "chain.pem"\nrequired = "sometimes"\n',
        ("tls.required", 4, "'none'"),
    ),
    ('[tls]\ncertificate = "chain.pem"\n', ("tls.certificate", 2, "together")),
    ("[tls]\nimplicit_port = 990\n", ("tls.certificate", 1, "needs certificate")),
    (
        '\n[tls]\ncertificate = "chain.pem"\nprivate_key = "other-key.pem"\n',
        ("tls.private_key", 4, "does not match"),
    ),
    (
        '[tls]\ncertificate = "garbage.pem"\nprivate_key = "key.pem"\n',
        ("tls.private_key", 3, "not PEM"),
    ),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_tls_errors_name_key_file_and_line(
    tmp_path: Path, pem: tuple[Path, Path], body: str, expected: tuple[str, int, str]
) -> None:
    key, line, words = expected
    trustme.CA().issue_cert("x").private_key_pem.write_to_path(tmp_path / "other-key.pem")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    path = write(tmp_path, body)
    assert_error_points_at(path, key, line, words)


def test_an_expired_certificate_warns_loudly_but_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = trustme.CA().issue_cert(
        "localhost", not_before=past, not_after=past + datetime.timedelta(days=1)
    )
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "old.pem")
    cert.private_key_pem.write_to_path(tmp_path / "old-key.pem")
    with caplog.at_level(logging.WARNING):
        config = load_config(
            write(tmp_path, '[tls]\ncertificate = "old.pem"\nprivate_key = "old-key.pem"\n')
        )
    assert config.tls.enabled
    assert any("EXPIRED" in record.getMessage() for record in caplog.records)


def test_tls_flags_are_checked_like_the_file(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    config = apply_overrides(
        ClusterConfig(), {"tls.certificate": pem[0], "tls.private_key": pem[1]}
    )
    assert config.tls.enabled
    with pytest.raises(ConfigError, match="tls"):
        apply_overrides(ClusterConfig(), {"tls.certificate": pem[0]})
