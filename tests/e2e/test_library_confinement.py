"""No virtual path, ``..`` sequence or symlink reaches a real file outside the root."""

from __future__ import annotations

import ftplib
import io
from pathlib import Path

import pytest

from ftp_cluster import PathIO, Server, User
from tests.e2e.conftest import ServerFactory


@pytest.fixture
def jail(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"top secret")
    (root / "inside.txt").write_bytes(b"fine")
    (root / "link-file").symlink_to(outside / "secret.txt")
    (root / "link-dir").symlink_to(outside)
    return root, outside


def test_dotdot_and_absolute_paths_stay_inside(
    run_server: ServerFactory, jail: tuple[Path, Path]
) -> None:
    root, _ = jail
    ftp = run_server(lambda: Server((User(base_path=root),), path_io_factory=PathIO)).client()
    for name in ("../outside/secret.txt", "/../../outside/secret.txt", "../../../../etc/passwd"):
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.retrbinary(f"RETR {name}", lambda _: None)
    data = io.BytesIO()
    ftp.retrbinary("RETR ../../inside.txt", data.write)  # ".." above "/" is "/"
    assert data.getvalue() == b"fine"


def test_symlinks_out_of_the_root_are_refused(
    run_server: ServerFactory, jail: tuple[Path, Path]
) -> None:
    root, outside = jail
    ftp = run_server(lambda: Server((User(base_path=root),), path_io_factory=PathIO)).client()
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.retrbinary("RETR link-file", lambda _: None)
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.retrbinary("RETR link-dir/secret.txt", lambda _: None)
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.cwd("link-dir")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.storbinary("STOR link-dir/new.txt", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.nlst("link-dir")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.rename("inside.txt", "link-dir/stolen.txt")
    assert not (outside / "new.txt").exists()
    assert not (outside / "stolen.txt").exists()
    assert (outside / "secret.txt").read_bytes() == b"top secret"
