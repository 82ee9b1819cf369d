"""The path IO contract, run against PathIO, AsyncPathIO and MemoryPathIO alike.

Disk back ends work in ``tmp_path``; the memory back end in ``/srv`` of a
fresh tree. Each tree also has an ``outside`` directory holding ``secret``,
which confine() must never let a path reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ParamSpec

import pytest

from ftp_cluster.worker.pathio import (
    AbstractPathIO,
    AsyncPathIO,
    Download,
    MemoryPathIO,
    PathIO,
    PathIOError,
)
from ftp_cluster.worker.pathio.base import UploadMode
from ftp_cluster.worker.pathio.local import TEMP_MARK

P = ParamSpec("P")

SECRET = b"top secret " * 100


def asynctest(func: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test body in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(func(*args, **kwargs))

    return wrapper


@dataclass(frozen=True)
class Tree:
    io: AbstractPathIO
    root: PurePosixPath
    outside: PurePosixPath
    on_disk: bool

    def __truediv__(self, name: str) -> PurePosixPath:
        return self.root / name


def make_tree(kind: str, tmp_path: Path) -> Tree:
    if kind == "MemoryPathIO":
        memory = MemoryPathIO()
        root, outside = PurePosixPath("/srv"), PurePosixPath("/outside")

        async def prepare() -> None:
            await mkdirs(memory, root)
            await memory.mkdir(outside)
            await put(memory, outside / "secret", SECRET)

        asyncio.run(prepare())
        return Tree(memory, root, outside, on_disk=False)
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(SECRET)
    disk = PathIO() if kind == "PathIO" else AsyncPathIO(timeout=30)
    return Tree(disk, PurePosixPath(tmp_path / "root"), PurePosixPath(tmp_path / "outside"), True)


@pytest.fixture(params=["PathIO", "AsyncPathIO", "MemoryPathIO"])
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> Tree:
    return make_tree(request.param, tmp_path)


@pytest.fixture(params=["PathIO", "AsyncPathIO"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Tree:
    return make_tree(request.param, tmp_path)


async def put(
    io: AbstractPathIO,
    path: PurePosixPath,
    data: bytes,
    mode: UploadMode = "replace",
    offset: int = 0,
) -> None:
    upload = await io.open_upload(path, mode, offset)
    await upload.write(data)
    await upload.commit()


async def drain(download: Download, chunk: int = 1000) -> bytes:
    parts = []
    while part := await download.read(chunk):
        parts.append(part)
    await download.close()
    return b"".join(parts)


async def get(io: AbstractPathIO, path: PurePosixPath, offset: int = 0) -> bytes:
    return await drain(await io.open_download(path, offset))


async def fails(code: int, operation: Awaitable[object]) -> None:
    with pytest.raises(PathIOError) as caught:
        await operation
    assert caught.value.errno == code, caught.value


async def names(io: AbstractPathIO, path: PurePosixPath) -> list[str]:
    return [info.name for info in await io.list(path)]


async def mkdirs(io: AbstractPathIO, path: PurePosixPath) -> None:
    """``mkdir -p`` in the tests (path IO creates one directory at a time)."""
    for parent in reversed([path, *path.parents]):
        with contextlib.suppress(PathIOError):
            await io.mkdir(parent)


async def exists(io: AbstractPathIO, path: PurePosixPath) -> bool:
    try:
        await io.info(path)
    except PathIOError as error:
        assert error.errno in (errno.ENOENT, errno.ENOTDIR), error
        return False
    return True


async def is_dir(io: AbstractPathIO, path: PurePosixPath) -> bool:
    return await exists(io, path) and (await io.info(path)).is_dir


# -- the tree: directories, listing, info --------------------------------------


@asynctest
async def test_mkdir_list_and_info(tree: Tree) -> None:
    io = tree.io
    assert await io.list(tree.root) == []
    await io.mkdir(tree / "b")
    await put(io, tree / "a.txt", b"hello")
    await mkdirs(io, tree.root / "c" / "d" / "e")
    await put(io, tree / ".hidden", b"")

    listing = await io.list(tree.root)
    assert [(i.name, i.is_dir) for i in listing] == [
        (".hidden", False),
        ("a.txt", False),
        ("b", True),
        ("c", True),
    ]
    assert await names(io, tree.root / "c" / "d") == ["e"]

    info = await io.info(tree / "a.txt")
    assert (info.name, info.is_dir, info.size) == ("a.txt", False, 5)
    assert stat.S_ISREG(info.mode) and info.nlink >= 1
    assert abs(info.mtime - time.time()) < 60
    directory = await io.info(tree / "b")
    assert directory.is_dir and stat.S_ISDIR(directory.mode) and directory.name == "b"
    assert (await io.info(tree.root)).is_dir

    uniques = {i.unique for i in listing}
    assert len(uniques) == 4 and "" not in uniques
    assert (await io.info(tree / "a.txt")).unique == info.unique

    for missing in (tree / "nothing", tree.root / "a.txt" / "below"):
        assert not await exists(io, missing)


@asynctest
async def test_mkdir_errors(tree: Tree) -> None:
    io = tree.io
    await io.mkdir(tree / "d")
    await put(io, tree / "f", b"x")
    await fails(errno.EEXIST, io.mkdir(tree / "d"))
    await fails(errno.EEXIST, io.mkdir(tree / "f"))
    await fails(errno.ENOENT, io.mkdir(tree.root / "x" / "y"))
    assert not await exists(io, tree / "x")
    await fails(errno.ENOTDIR, io.mkdir(tree.root / "f" / "y"))
    await io.mkdir(tree.root / "d" / "y")
    assert await is_dir(io, tree.root / "d" / "y")


@asynctest
async def test_directory_mtime_follows_its_entries(tree: Tree) -> None:
    io = tree.io
    await io.mkdir(tree / "d")
    before = (await io.info(tree / "d")).mtime
    await asyncio.sleep(0.05)  # beyond the kernel's coarse timestamp tick
    await put(io, tree.root / "d" / "f", b"x")
    after_create = (await io.info(tree / "d")).mtime
    assert after_create > before
    file_before = (await io.info(tree.root / "d" / "f")).mtime
    await asyncio.sleep(0.05)
    await put(io, tree.root / "d" / "f", b"y", "append")
    assert (await io.info(tree.root / "d" / "f")).mtime > file_before
    await asyncio.sleep(0.05)
    await io.unlink(tree.root / "d" / "f")
    assert (await io.info(tree / "d")).mtime > after_create


@asynctest
async def test_rmdir(tree: Tree) -> None:
    io = tree.io
    await mkdirs(io, tree.root / "full" / "inner")
    await put(io, tree / "f", b"x")
    await fails(errno.ENOTEMPTY, io.rmdir(tree / "full"))
    await fails(errno.ENOTDIR, io.rmdir(tree / "f"))
    await fails(errno.ENOENT, io.rmdir(tree / "missing"))
    await io.rmdir(tree.root / "full" / "inner")
    await io.rmdir(tree / "full")
    assert await names(io, tree.root) == ["f"]


@asynctest
async def test_unlink(tree: Tree) -> None:
    io = tree.io
    await put(io, tree / "f", b"x")
    await io.mkdir(tree / "d")
    await fails(errno.EISDIR, io.unlink(tree / "d"))
    await fails(errno.ENOENT, io.unlink(tree / "missing"))
    await io.unlink(tree / "f")
    assert await names(io, tree.root) == ["d"]


@asynctest
async def test_rename(tree: Tree) -> None:
    io = tree.io
    await put(io, tree / "a", b"aaa")
    await put(io, tree / "b", b"bbb")
    await mkdirs(io, tree.root / "dir" / "sub")
    await put(io, tree.root / "dir" / "sub" / "deep", b"deep")
    await io.mkdir(tree / "empty")
    await mkdirs(io, tree.root / "busy" / "x")

    await io.rename(tree / "a", tree / "a2")
    assert await get(io, tree / "a2") == b"aaa" and not await exists(io, tree / "a")
    await io.rename(tree / "a2", tree / "b")  # replaces a file
    assert await get(io, tree / "b") == b"aaa"
    await io.rename(tree / "dir", tree.root / "empty" / "moved")
    assert await get(io, tree.root / "empty" / "moved" / "sub" / "deep") == b"deep"
    assert await names(io, tree.root) == ["b", "busy", "empty"]

    await fails(errno.ENOENT, io.rename(tree / "missing", tree / "x"))
    await fails(errno.ENOENT, io.rename(tree / "b", tree.root / "nowhere" / "b"))
    await fails(errno.EISDIR, io.rename(tree / "b", tree / "busy"))
    await fails(errno.ENOTEMPTY, io.rename(tree / "empty", tree / "busy"))
    await fails(errno.EINVAL, io.rename(tree / "busy", tree.root / "busy" / "x" / "in"))
    await io.mkdir(tree / "vacant")
    await fails(errno.ENOTDIR, io.rename(tree / "vacant", tree / "b"))
    await io.rename(tree / "empty", tree / "vacant")  # an empty directory is replaced
    assert await names(io, tree / "vacant") == ["moved"]


@asynctest
async def test_missing_and_wrong_kind(tree: Tree) -> None:
    io = tree.io
    await put(io, tree / "f", b"x")
    await io.mkdir(tree / "d")
    missing = tree / "missing"
    await fails(errno.ENOENT, io.info(missing))
    await fails(errno.ENOENT, io.list(missing))
    await fails(errno.ENOENT, io.open_download(missing))
    await fails(errno.ENOTDIR, io.list(tree / "f"))
    await fails(errno.ENOTDIR, io.info(tree.root / "f" / "below"))
    await fails(errno.EISDIR, io.open_download(tree / "d"))
    modes: tuple[UploadMode, ...] = ("replace", "append", "offset")
    for mode in modes:
        await fails(errno.ENOENT, io.open_upload(missing / "new", mode))
        await fails(errno.ENOTDIR, io.open_upload(tree.root / "f" / "new", mode))
        await fails(errno.EISDIR, io.open_upload(tree / "d", mode))
    assert await names(io, tree.root) == ["d", "f"]


# -- uploads ----------------------------------------------------------------------


@asynctest
async def test_replace_upload_is_atomic(tree: Tree) -> None:
    io = tree.io
    path = tree / "f"
    await put(io, path, b"old")
    early = await io.open_download(path)

    upload = await io.open_upload(path)
    await upload.write(b"new ")
    assert await get(io, path) == b"old"
    await upload.abort()
    await upload.abort()  # harmless twice, as error paths do
    assert await get(io, path) == b"old"
    assert await names(io, tree.root) == ["f"]
    await fails(errno.EBADF, upload.write(b"late"))

    upload = await io.open_upload(path)
    await upload.write(b"new ")
    await upload.write(memoryview(b"content"))
    assert await get(io, path) == b"old"
    await upload.commit()
    assert await get(io, path) == b"new content"
    assert await names(io, tree.root) == ["f"]
    await upload.abort()  # after commit: nothing to undo
    assert await get(io, path) == b"new content"
    # A reader that opened the old file goes on reading the old file.
    assert await drain(early) == b"old"

    await put(io, tree / "fresh", b"created")
    assert await get(io, tree / "fresh") == b"created"


@asynctest
async def test_offset_upload_keeps_the_tail(tree: Tree) -> None:
    io = tree.io
    path = tree / "f"
    await put(io, path, b"0123456789")
    await put(io, path, b"ab", "offset", 3)
    assert await get(io, path) == b"012ab56789"
    await put(io, path, b"Z", "offset", 0)
    assert await get(io, path) == b"Z12ab56789"
    await put(io, path, b"!", "offset", 12)
    assert await get(io, path) == b"Z12ab56789\0\0!"
    await put(io, tree / "new", b"made", "offset", 0)
    assert await get(io, tree / "new") == b"made"


@asynctest
async def test_append_upload(tree: Tree) -> None:
    io = tree.io
    path = tree / "f"
    await put(io, path, b"abc")
    await put(io, path, b"def", "append")
    assert await get(io, path) == b"abcdef"
    upload = await io.open_upload(path, "append")
    await upload.write(b"ghi")
    await upload.abort()  # in place: what was written stays
    assert await get(io, path) == b"abcdefghi"
    await put(io, tree / "new", b"made", "append")
    assert await get(io, tree / "new") == b"made"


# -- downloads --------------------------------------------------------------------


@asynctest
async def test_create_upload_takes_a_new_name_only_and_gives_it_back_on_abort(
    tree: Tree,
) -> None:
    io = tree.io
    await put(io, tree / "taken", b"old")
    await fails(errno.EEXIST, io.open_upload(tree / "taken", "create"))
    assert await get(io, tree / "taken") == b"old"
    upload = await io.open_upload(tree / "new", "create")
    # The name is reserved at once: a second creation of it fails.
    await fails(errno.EEXIST, io.open_upload(tree / "new", "create"))
    await upload.write(b"partial")
    await upload.abort()
    assert not await exists(io, tree / "new")
    upload = await io.open_upload(tree / "new", "create")
    await upload.write(b"whole")
    await upload.commit()
    assert await get(io, tree / "new") == b"whole"


@asynctest
async def test_set_modified_changes_mtime_only(tree: Tree) -> None:
    io = tree.io
    await put(io, tree / "f", b"data")
    await io.mkdir(tree / "d")
    await io.set_modified(tree / "f", 1_000_000_000.5)
    await io.set_modified(tree / "d", 86400.0)
    info = await io.info(tree / "f")
    assert info.mtime == pytest.approx(1_000_000_000.5) and info.size == 4
    assert (await io.info(tree / "d")).mtime == pytest.approx(86400.0)
    await fails(errno.ENOENT, io.set_modified(tree / "missing", 0.0))


@asynctest
async def test_birth_time_is_the_creation_not_the_change_time(tree: Tree) -> None:
    io = tree.io
    await put(io, tree / "f", b"x")
    born = (await io.info(tree / "f")).created
    if born is None:
        pytest.skip("this file system records no birth times")
    assert abs(born - time.time()) < 60
    await io.set_modified(tree / "f", 86400.0)  # changes the inode change time, not birth
    await asyncio.sleep(0.05)
    await put(io, tree / "f", b"more", "append")
    info = await io.info(tree / "f")
    assert info.created == born
    assert [entry.created for entry in await io.list(tree.root)] == [born]


@asynctest
async def test_download_offsets(tree: Tree) -> None:
    io = tree.io
    content = bytes(range(256)) * 40
    await put(io, tree / "f", content)
    assert await get(io, tree / "f") == content
    assert await get(io, tree / "f", 1000) == content[1000:]
    assert await get(io, tree / "f", len(content) - 1) == content[-1:]
    assert await get(io, tree / "f", len(content)) == b""
    assert await get(io, tree / "f", len(content) + 5) == b""
    download = await io.open_download(tree / "f", 10)
    assert await download.read(5) == content[10:15]
    assert await download.read(1 << 20) == content[15:]
    assert await download.read(10) == b""
    await download.close()
    await put(io, tree / "empty", b"")
    assert await get(io, tree / "empty") == b""


@asynctest
async def test_concurrent_downloads_of_one_file(tree: Tree) -> None:
    io = tree.io
    content = bytes((index * 7 + index // 256) % 256 for index in range(16384))
    await put(io, tree / "f", content)

    async def read(offset: int, chunk: int) -> bytes:
        download = await io.open_download(tree / "f", offset)
        parts = []
        while part := await download.read(chunk):
            parts.append(part)
            await asyncio.sleep(0)  # let the other readers in between
        await download.close()
        return b"".join(parts)

    starts = (0, 3, 5000, 16000, 0)
    chunks = (7, 64, 1000, 3, 4096)
    results = await asyncio.gather(*(read(s, c) for s, c in zip(starts, chunks, strict=True)))
    assert list(results) == [content[start:] for start in starts]


@asynctest
async def test_download_descriptor(tree: Tree) -> None:
    io = tree.io
    await put(io, tree / "f", b"0123456789")
    download = await io.open_download(tree / "f", 4)
    fd = download.fileno()
    if tree.on_disk:
        assert fd is not None
        assert os.fstat(fd).st_size == 10
        assert os.lseek(fd, 0, os.SEEK_CUR) == 4  # positioned for a sendfile
        assert os.pread(fd, 3, 4) == b"456"
    else:
        assert fd is None
    await download.close()
    await fails(errno.EBADF, download.read(1))


@asynctest
async def test_upload_descriptor(tree: Tree) -> None:
    """Only PathIO offers one, not for appending (Linux cannot splice there)."""
    io = tree.io
    spliceable = isinstance(io, PathIO)
    cases: list[tuple[UploadMode, int, bytes]] = [
        ("replace", 0, b"abc"),
        ("offset", 4, b"0123abc789"),
    ]
    for mode, offset, expected in cases:
        await put(io, tree / "f", b"0123456789")
        upload = await io.open_upload(tree / "f", mode, offset)
        fd = upload.fileno()
        if spliceable:
            assert fd is not None
            assert os.lseek(fd, 0, os.SEEK_CUR) == offset  # positioned for a splice
            os.write(fd, b"abc")
        else:
            assert fd is None
            await upload.write(b"abc")
        await upload.commit()
        assert upload.fileno() is None
        assert await get(io, tree / "f") == expected
    appending = await io.open_upload(tree / "f", "append")
    assert appending.fileno() is None
    await appending.abort()


# -- confinement ------------------------------------------------------------------


@asynctest
async def test_confine_lexically(tree: Tree) -> None:
    io, root = tree.io, tree.root
    assert await io.confine(root, root) == root
    assert await io.confine(root, root / "new" / "deeper") == root / "new" / "deeper"
    await io.mkdir(tree / "d")
    assert await io.confine(root, root / "d") == root / "d"
    refused = [
        root / ".." / tree.outside.name / "secret",
        root / "d" / ".." / ".." / "x",
        root / "new" / ".." / "d",
        tree.outside / "secret",
        PurePosixPath("/etc/passwd"),
        PurePosixPath("/"),
        root.parent / (root.name + "2") / "x",
    ]
    for path in refused:
        await fails(errno.EACCES, io.confine(root, path))
    await fails(errno.EINVAL, io.confine(root, root / "nul\0byte"))


@asynctest
async def test_confine_resolves_symlinks(disk: Tree) -> None:
    io, root = disk.io, disk.root
    os.mkdir(root / "sub")
    os.symlink(disk.outside / "secret", root / "secret-link")
    os.symlink(disk.outside, root / "outside-dir")
    os.symlink(disk.outside / "nothing", root / "dangling")
    os.symlink("..", root / "up")
    os.symlink("sub", root / "inner")
    os.symlink("../..", root / "sub" / "up-again")
    refused = [
        root / "secret-link",
        root / "outside-dir",
        root / "outside-dir" / "secret",
        root / "outside-dir" / "not-yet",
        root / "dangling",
        root / "up",
        root / "up" / "outside" / "secret",
        root / "inner" / "up-again",
    ]
    for path in refused:
        await fails(errno.EACCES, io.confine(root, path))
    for path in (root / "inner", root / "inner" / "new", root / "sub" / "x"):
        assert await io.confine(root, path) == path

    # A root reached through a symlink is resolved the same way.
    linked_root = root.parent / "root-link"
    os.symlink(root, linked_root)
    assert await io.confine(linked_root, linked_root / "sub") == linked_root / "sub"
    await fails(errno.EACCES, io.confine(linked_root, linked_root / "secret-link"))


@asynctest
async def test_opened_files_refuse_a_symlink_swapped_in(disk: Tree) -> None:
    io, path = disk.io, disk / "f"
    await put(io, path, b"mine")
    assert await io.confine(disk.root, path) == path
    os.unlink(path)
    os.symlink(disk.outside / "secret", path)  # a local user races the server
    await fails(errno.EACCES, io.open_download(path))
    await fails(errno.EACCES, io.open_upload(path, "append"))
    await fails(errno.EACCES, io.open_upload(path, "offset", 2))
    assert (Path(disk.outside) / "secret").read_bytes() == SECRET


@asynctest
async def test_listing_shows_symlinks_as_links(disk: Tree) -> None:
    io, root = disk.io, disk.root
    os.mkdir(root / "sub")
    os.symlink(disk.outside / "secret", root / "link")
    os.symlink("sub", root / "alias")
    entries = {info.name: info for info in await io.list(root)}
    link = entries["link"]
    assert not link.is_dir and stat.S_ISLNK(link.mode)
    assert link.size == len(str(disk.outside / "secret")) != len(SECRET)
    assert stat.S_ISLNK(entries["alias"].mode) and not entries["alias"].is_dir
    assert stat.S_ISDIR(entries["sub"].mode)
    # info() on an accepted (in-root) link describes its target: CWD needs that.
    alias = await io.info(root / "alias")
    assert alias.is_dir and alias.name == "alias"


@pytest.mark.timeout(30)
@asynctest
async def test_special_files_are_refused_without_blocking(disk: Tree) -> None:
    fifo = disk / "pipe"
    os.mkfifo(fifo)
    await fails(errno.EACCES, disk.io.open_download(fifo))
    with pytest.raises(PathIOError):  # ENXIO: nobody reads the FIFO
        await disk.io.open_upload(fifo, "append")


@asynctest
async def test_replace_upload_uses_a_hidden_temporary(disk: Tree) -> None:
    io, path = disk.io, disk / "report.csv"
    await put(io, path, b"old")
    os.chmod(path, 0o640)
    upload = await io.open_upload(path)
    await upload.write(b"new")
    listed = await names(io, disk.root)
    assert len(listed) == 2 and listed[0].startswith(f".report.csv{TEMP_MARK}")
    await upload.commit()
    assert await names(io, disk.root) == ["report.csv"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640

    long_name = "n" * 250
    await put(io, disk / long_name, b"fits")
    assert await get(io, disk / long_name) == b"fits"


# -- per back end -----------------------------------------------------------------


@asynctest
async def test_memory_trees_are_separate_and_start_empty() -> None:
    first, second = MemoryPathIO(), MemoryPathIO()
    root = PurePosixPath("/")
    assert await first.list(root) == [] and (await first.info(root)).is_dir
    await put(first, root / "f", b"x")
    assert await names(first, root) == ["f"]
    assert await second.list(root) == []
    await fails(errno.EEXIST, first.mkdir(root))
    await fails(errno.EBUSY, first.rmdir(root))
    assert first.real_root(Path("/srv/ftp")) == PurePosixPath("/srv/ftp")


@asynctest
async def test_memory_append_is_seen_by_an_open_reader() -> None:
    memory, path = MemoryPathIO(), PurePosixPath("/f")
    await put(memory, path, b"abc")
    download = await memory.open_download(path)
    assert await download.read(3) == b"abc"
    await put(memory, path, b"def", "append")  # grows the buffer the reader holds
    assert await download.read(10) == b"def"
    await download.close()


def open_descriptors(target: PurePosixPath) -> int:
    """Descriptors of this process open on ``target`` (others come and go in tests)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == str(target):
                count += 1
    return count


@asynctest
async def test_async_path_io_times_out_on_a_stalled_pool(tmp_path: Path) -> None:
    """A pool whose only thread is stuck stands for a stalled disk."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    io = AsyncPathIO(timeout=0.2)
    path = PurePosixPath(tmp_path / "f")
    await put(io, path, b"0123456789")
    download = await io.open_download(path)
    assert await download.read(4) == b"0123"
    descriptors = open_descriptors(path)

    release = threading.Event()
    stuck = loop.run_in_executor(None, release.wait, 30)
    try:
        started = time.monotonic()
        await fails(errno.ETIMEDOUT, io.info(path))
        assert time.monotonic() - started < 5
        await fails(errno.ETIMEDOUT, io.open_download(path))
        await fails(errno.ETIMEDOUT, download.read(4))
    finally:
        release.set()
        await stuck

    # The abandoned open completes late and its descriptor is closed again
    # (up to 15 s: on a loaded machine the pool's thread may wait for a core).
    for _ in range(750):
        if open_descriptors(path) == descriptors:
            break
        await asyncio.sleep(0.02)
    assert open_descriptors(path) == descriptors
    # The abandoned read did not move the download on.
    assert await download.read(4) == b"4567"
    await download.close()
    assert (await io.info(path)).size == 10


@asynctest
async def test_path_io_without_timeout_keeps_working(tmp_path: Path) -> None:
    io = AsyncPathIO()
    path = PurePosixPath(tmp_path / "f")
    await put(io, path, b"x" * 300_000)  # larger than the write buffer
    assert await get(io, path) == b"x" * 300_000
