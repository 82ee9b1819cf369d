"""``AbstractPathIO.truncate`` (an in-place upload past its quota is cut back), every back end."""

from __future__ import annotations

import errno
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
