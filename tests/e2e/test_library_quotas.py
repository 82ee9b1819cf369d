"""Disk quotas through the library server, on a real disk with ftplib.

Each test's user has a quota over its own ``base_path``; the tally is read
back with ``SITE QUOTA`` and compared with what really lies on disk, so an
accounting slip (a freed size not given back, a refused upload's data
left behind) shows as a difference. Every test runs with the tally in the
server's memory and in a real Redis.
"""

from __future__ import annotations

import ftplib
import io
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ftp_cluster import PathIO, Server, User
from ftp_cluster.shared.limits.base import LimitsBackend
from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.shared.limits.redis import RedisLimits
from ftp_cluster.worker.pathio.local import TEMP_MARK
from tests.e2e.conftest import RunningServer, ServerFactory

PASSWORD = "quota-test-pw-7311"
KiB = 1024
_QUOTA_LINE = re.compile(r"quota: (\d+) of (\d+|unlimited) bytes, (\d+) of (\d+|unlimited) files")


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest, redis_namespace: str) -> Callable[[], LimitsBackend]:
    """The tally in the server's memory, or in a real Redis."""
    if request.param == "local":
        return LocalLimits
    url = request.getfixturevalue("redis_server").url
    return lambda: RedisLimits(url, namespace=redis_namespace, worker_id="library")


def serve(
    run_server: ServerFactory, root: Path, backend: Callable[[], LimitsBackend], **quota: Any
) -> RunningServer:
    user = User("alice", PASSWORD, base_path=root, **quota)
    return run_server(lambda: Server(users=[user], path_io_factory=PathIO, limits=backend()))


def login(server: RunningServer) -> ftplib.FTP:
    return server.client("alice", PASSWORD)


def tally(ftp: ftplib.FTP) -> tuple[int, int]:
    """Bytes and files the server's tally says (SITE QUOTA)."""
    reply = ftp.sendcmd("SITE QUOTA")
    found = _QUOTA_LINE.search(reply)
    assert found is not None, reply
    return int(found[1]), int(found[3])


def on_disk(root: Path) -> tuple[int, int]:
    sizes = [entry.stat().st_size for entry in root.rglob("*") if entry.is_file()]
    return sum(sizes), len(sizes)


def store(
    ftp: ftplib.FTP, name: str, data: bytes, verb: str = "STOR", rest: int | None = None
) -> str:
    """Upload; the final reply, or the error's text."""
    try:
        return ftp.storbinary(f"{verb} {name}", io.BytesIO(data), rest=rest)
    except ftplib.error_temp as error:
        return str(error)
    except ftplib.error_perm as error:
        return str(error)
    except OSError:
        # The server stopped reading at the quota; its verdict is on the control line.
        return _verdict(ftp)


def _verdict(ftp: ftplib.FTP) -> str:
    try:
        return ftp.getresp()
    except (ftplib.error_perm, ftplib.error_temp) as error:
        return str(error)


def no_temporaries(root: Path) -> bool:
    return not [entry for entry in root.rglob("*") if TEMP_MARK in entry.name]


def test_upload_past_the_quota_is_refused_and_removed(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    ftp = login(serve(run_server, tmp_path, backend, quota_bytes=100 * KiB))
    assert store(ftp, "small", b"a" * (40 * KiB)).startswith("226")
    # 2 MiB: far more than is left, and more than one reservation's worth.
    reply = store(ftp, "big", os.urandom(2048 * KiB))
    assert reply.startswith("552"), reply
    assert not (tmp_path / "big").exists()
    assert no_temporaries(tmp_path)
    assert tally(ftp) == on_disk(tmp_path) == (40 * KiB, 1)
    # Exactly what is left still fits.
    assert store(ftp, "rest", b"b" * (60 * KiB)).startswith("226")
    assert tally(ftp) == on_disk(tmp_path) == (100 * KiB, 2)
    assert store(ftp, "one-more", b"c").startswith("552")
    assert tally(ftp) == on_disk(tmp_path)


def test_overwrite_keeps_old_content_when_refused_and_frees_it_when_done(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    ftp = login(serve(run_server, tmp_path, backend, quota_bytes=100 * KiB))
    old = b"o" * (60 * KiB)
    assert store(ftp, "f", old).startswith("226")
    # While it runs, old and new both count: 60 + 50 > 100.
    assert store(ftp, "f", b"n" * (50 * KiB)).startswith("552")
    assert (tmp_path / "f").read_bytes() == old
    assert tally(ftp) == on_disk(tmp_path) == (60 * KiB, 1)
    assert store(ftp, "f", b"n" * (30 * KiB)).startswith("226")
    assert tally(ftp) == on_disk(tmp_path) == (30 * KiB, 1)
    assert no_temporaries(tmp_path)


def test_dele_rnto_rmd_appe_rest_adjust_the_tally(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    ftp = login(serve(run_server, tmp_path, backend, quota_bytes=1024 * KiB, quota_files=10))
    for name, size in (("a", 10), ("b", 20), ("c", 30)):
        assert store(ftp, name, b"x" * (size * KiB)).startswith("226")
    assert tally(ftp) == on_disk(tmp_path) == (60 * KiB, 3)
    ftp.delete("a")
    assert tally(ftp) == on_disk(tmp_path) == (50 * KiB, 2)
    ftp.rename("b", "b2")  # a plain rename changes nothing
    assert tally(ftp) == on_disk(tmp_path) == (50 * KiB, 2)
    ftp.rename("b2", "c")  # over an existing file: c's 30 KiB are gone
    assert tally(ftp) == on_disk(tmp_path) == (20 * KiB, 1)
    ftp.mkd("d")
    assert store(ftp, "d/e", b"e" * KiB).startswith("226")
    with pytest.raises(ftplib.error_perm):
        ftp.rmd("d")  # not empty: nothing changes
    ftp.delete("d/e")
    ftp.rmd("d")
    assert tally(ftp) == on_disk(tmp_path) == (20 * KiB, 1)
    assert store(ftp, "c", b"y" * (5 * KiB), verb="APPE").startswith("226")
    assert store(ftp, "new", b"y" * (5 * KiB), verb="APPE").startswith("226")
    assert tally(ftp) == on_disk(tmp_path) == (30 * KiB, 2)
    # REST inside the file: the overwritten part costs nothing, the rest grows it.
    assert store(ftp, "c", b"z" * (10 * KiB), rest=20 * KiB).startswith("226")
    assert (tmp_path / "c").stat().st_size == 30 * KiB
    assert tally(ftp) == on_disk(tmp_path) == (35 * KiB, 2)
    # STOU makes a new file.
    reply = ftp.storbinary("STOU", io.BytesIO(b"u" * KiB))
    assert reply.startswith("226")
    assert tally(ftp) == on_disk(tmp_path) == (36 * KiB, 3)


def test_in_place_uploads_past_the_quota_are_cut_back(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    ftp = login(serve(run_server, tmp_path, backend, quota_bytes=100 * KiB))
    old = b"o" * (60 * KiB)
    assert store(ftp, "f", old).startswith("226")
    assert store(ftp, "f", b"a" * (50 * KiB), verb="APPE").startswith("552")
    assert (tmp_path / "f").read_bytes() == old
    assert store(ftp, "new", b"a" * (50 * KiB), verb="APPE").startswith("552")
    assert not (tmp_path / "new").exists()
    assert store(ftp, "f", b"r" * (60 * KiB), rest=50 * KiB).startswith("552")
    assert (tmp_path / "f").stat().st_size == 60 * KiB
    assert tally(ftp) == on_disk(tmp_path) == (60 * KiB, 1)
    # Up to the edge, in place, still fits.
    assert store(ftp, "f", b"a" * (40 * KiB), verb="APPE").startswith("226")
    assert tally(ftp) == on_disk(tmp_path) == (100 * KiB, 1)


def test_deleting_a_link_frees_nothing(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    ftp = login(serve(run_server, tmp_path, backend, quota_bytes=100 * KiB))
    assert store(ftp, "f", b"x" * (10 * KiB)).startswith("226")
    (tmp_path / "link").symlink_to(tmp_path / "f")  # made outside FTP: not counted
    ftp.delete("link")
    assert tally(ftp) == on_disk(tmp_path) == (10 * KiB, 1)


def test_file_quota_refuses_a_new_file_but_not_an_overwrite(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    ftp = login(serve(run_server, tmp_path, backend, quota_files=2))
    assert store(ftp, "one", b"1").startswith("226")
    assert store(ftp, "two", b"2").startswith("226")
    assert store(ftp, "three", b"3").startswith("552")
    assert not (tmp_path / "three").exists()
    assert store(ftp, "two", b"22").startswith("226")
    assert tally(ftp) == on_disk(tmp_path) == (3, 2)


def test_first_login_counts_what_is_there_and_stat_tells(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "old").write_bytes(b"q" * (70 * KiB))
    (tmp_path / "top").write_bytes(b"t" * (10 * KiB))
    ftp = login(serve(run_server, tmp_path, backend, quota_bytes=100 * KiB, quota_files=5))
    # The first upload waits for the scan, then the quota holds with the old files.
    assert store(ftp, "new", b"n" * (30 * KiB)).startswith("552")
    assert tally(ftp) == on_disk(tmp_path) == (80 * KiB, 2)
    status = ftp.sendcmd("STAT")
    assert status.startswith("211")
    assert f"quota: {80 * KiB} of {100 * KiB} bytes, 2 of 5 files used" in status
    assert ftp.sendcmd("SITE QUOTA").startswith("200 quota: ")


def test_users_without_quota_are_not_tallied(
    run_server: ServerFactory, tmp_path: Path, backend: Callable[[], LimitsBackend]
) -> None:
    ftp = login(serve(run_server, tmp_path, backend))
    assert ftp.sendcmd("SITE QUOTA") == "200 quota: none (unlimited)"
    assert "quota" not in ftp.sendcmd("STAT")
    assert store(ftp, "f", b"x" * (300 * KiB)).startswith("226")
