"""``AbstractPathIO.truncate`` and ``entry``, what quotas need of a path IO, every back end."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import pytest

from ftp_cluster.worker.pathio.base import PathIOError
from tests.worker.test_pathio import Tree, asynctest, drain, make_tree, put


@pytest.fixture(params=["PathIO", "AsyncPathIO", "MemoryPathIO"])
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> Tree:
    return make_tree(request.param, tmp_path)


@asynctest
async def test_truncate_cuts_a_file_back(tree: Tree) -> None:
    await put(tree.io, tree / "f", b"0123456789")
    await tree.io.truncate(tree / "f", 4)
    assert (await tree.io.info(tree / "f")).size == 4
    assert await drain(await tree.io.open_download(tree / "f")) == b"0123"


@asynctest
async def test_truncate_refuses_directories_and_missing_files(tree: Tree) -> None:
    await tree.io.mkdir(tree / "d")
    with pytest.raises(PathIOError) as error:
        await tree.io.truncate(tree / "d", 0)
    assert error.value.errno in (errno.EISDIR, errno.EACCES, errno.EINVAL)
    with pytest.raises(PathIOError) as error:
        await tree.io.truncate(tree / "missing", 0)
    assert error.value.errno == errno.ENOENT


@asynctest
async def test_entry_describes_a_link_itself(tree: Tree, tmp_path: Path) -> None:
    await put(tree.io, tree / "f", b"0123456789")
    assert (await tree.io.entry(tree / "f")).size == 10
    if tree.on_disk:
        (tmp_path / "root" / "link").symlink_to(tmp_path / "root" / "f")
        assert stat.S_ISLNK((await tree.io.entry(tree / "link")).mode)
        assert stat.S_ISREG((await tree.io.info(tree / "link")).mode)
