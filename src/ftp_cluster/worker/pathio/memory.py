"""An in-memory tree: :class:`MemoryPathIO`, for tests and throw-away servers.

Every operation completes without awaiting anything, so each one is atomic
with respect to the other sessions on the loop, and no locking is needed.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ftp_cluster.worker.pathio.base import (
    AbstractPathIO,
    Download,
    FileInfo,
    PathIOError,
    Upload,
    UploadMode,
    confine_lexically,
)

__all__ = ["MemoryPathIO"]

_FILE_MODE = stat.S_IFREG | 0o644
_DIR_MODE = stat.S_IFDIR | 0o755
_devices = itertools.count(1)


class _Node:
    __slots__ = ("born", "ino", "mtime")

    def __init__(self, ino: int, now: float) -> None:
        self.ino = ino
        self.born = now
        self.mtime = now


class _File(_Node):
    __slots__ = ("data",)

    def __init__(self, ino: int, now: float, data: bytearray) -> None:
        super().__init__(ino, now)
        self.data = data


class _Dir(_Node):
    __slots__ = ("children",)

    def __init__(self, ino: int, now: float) -> None:
        super().__init__(ino, now)
        self.children: dict[str, _Node] = {}

    def changed(self, now: float) -> None:
        self.mtime = now


class MemoryPathIO(AbstractPathIO):
    """One server's file tree, held in memory; a new instance holds just ``/``.

    Paths are absolute :class:`~pathlib.PurePosixPath` values. There are no
    symlinks, so :meth:`confine` is lexical. Operations never block, so
    ``timeout`` has nothing to bound. Downloads have no descriptor
    (``fileno()`` is ``None``) and each keeps its own position.
    """

    def __init__(self, *, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self._device = next(_devices)
        self._inodes = itertools.count(1)
        self._root = _Dir(next(self._inodes), time.time())

    def real_root(self, configured: Path) -> PurePosixPath:
        """The configured root as a tree path (the host's disk is not consulted)."""
        return PurePosixPath("/") / PurePosixPath(configured)

    async def confine(self, root: PurePosixPath, path: PurePosixPath) -> PurePosixPath:
        confine_lexically(root, path)
        return path

    async def info(self, path: PurePosixPath) -> FileInfo:
        return self._info(path.name, self._lookup(path))

    async def list(self, path: PurePosixPath) -> Sequence[FileInfo]:
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise _error(errno.ENOTDIR, path)
        return [self._info(name, child) for name, child in sorted(node.children.items())]

    async def mkdir(self, path: PurePosixPath) -> None:
        if not _names(path):
            raise _error(errno.EEXIST, path)
        parent, name = self._parent(path)
        if name in parent.children:
            raise _error(errno.EEXIST, path)
        now = time.time()
        parent.children[name] = _Dir(next(self._inodes), now)
        parent.changed(now)

    async def rmdir(self, path: PurePosixPath) -> None:
        parent, name = self._parent(path)
        node = _child(parent, name, path)
        if not isinstance(node, _Dir):
            raise _error(errno.ENOTDIR, path)
        if node.children:
            raise _error(errno.ENOTEMPTY, path)
        del parent.children[name]
        parent.changed(time.time())

    async def unlink(self, path: PurePosixPath) -> None:
        parent, name = self._parent(path)
        if isinstance(_child(parent, name, path), _Dir):
            raise _error(errno.EISDIR, path)
        del parent.children[name]
        parent.changed(time.time())

    async def rename(self, source: PurePosixPath, destination: PurePosixPath) -> None:
        source_parent, source_name = self._parent(source)
        node = _child(source_parent, source_name, source)
        target_parent, target_name = self._parent(destination)
        if source == destination:
            return
        if isinstance(node, _Dir) and destination.is_relative_to(source):
            raise _error(errno.EINVAL, destination)  # into itself
        existing = target_parent.children.get(target_name)
        if isinstance(node, _Dir) and existing is not None:
            if not isinstance(existing, _Dir):
                raise _error(errno.ENOTDIR, destination)
            if existing.children:
                raise _error(errno.ENOTEMPTY, destination)
        elif isinstance(existing, _Dir):
            raise _error(errno.EISDIR, destination)
        del source_parent.children[source_name]
        target_parent.children[target_name] = node
        now = time.time()
        source_parent.changed(now)
        target_parent.changed(now)

    async def set_modified(self, path: PurePosixPath, mtime: float) -> None:
        self._lookup(path).mtime = mtime

    async def truncate(self, path: PurePosixPath, size: int) -> None:
        node = self._lookup(path)
        if not isinstance(node, _File):
            raise _error(errno.EISDIR, path)
        del node.data[size:]
        node.mtime = time.time()

    async def open_download(self, path: PurePosixPath, offset: int = 0) -> Download:
        node = self._lookup(path)
        if isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        assert isinstance(node, _File)
        if offset < 0:
            raise _error(errno.EINVAL, path)
        return _MemoryDownload(node.data, offset)

    async def open_upload(
        self, path: PurePosixPath, mode: UploadMode = "replace", offset: int = 0
    ) -> Upload:
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        if offset < 0:
            raise _error(errno.EINVAL, path)
        if mode == "replace":
            return _ReplaceUpload(self, path)
        if mode == "create":
            if node is not None:
                raise _error(errno.EEXIST, path)
            # Reserves the name at once (STOU announces it); removed on abort.
            placeholder = _File(next(self._inodes), time.time(), bytearray())
            parent.children[name] = placeholder
            return _ReplaceUpload(self, path, placeholder)
        if node is None:
            now = time.time()
            node = parent.children[name] = _File(next(self._inodes), now, bytearray())
            parent.changed(now)
        assert isinstance(node, _File)
        return _InPlaceUpload(node, None if mode == "append" else offset)

    def _install(self, path: PurePosixPath, data: bytearray) -> None:
        """Put a new file with ``data`` at ``path``, replacing a file there (a replace commit)."""
        parent, name = self._parent(path)
        if isinstance(parent.children.get(name), _Dir):
            raise _error(errno.EISDIR, path)
        now = time.time()
        # A new node, as a rename gives a new inode: open downloads of the old
        # file keep reading the old data.
        parent.children[name] = _File(next(self._inodes), now, data)
        parent.changed(now)

    def _remove_placeholder(self, path: PurePosixPath, placeholder: _File) -> None:
        """Take back a name reserved by a "create" upload that failed."""
        parent, name = self._parent(path)
        if parent.children.get(name) is placeholder:
            del parent.children[name]
            parent.changed(time.time())

    # -- tree walking ---------------------------------------------------------

    def _lookup(self, path: PurePosixPath) -> _Node:
        node: _Node = self._root
        for name in _names(path):
            if not isinstance(node, _Dir):
                raise _error(errno.ENOTDIR, path)
            found = node.children.get(name)
            if found is None:
                raise _error(errno.ENOENT, path)
            node = found
        return node

    def _parent(self, path: PurePosixPath) -> tuple[_Dir, str]:
        """The directory holding ``path`` (which must exist) and ``path``'s name."""
        names = _names(path)
        if not names:
            raise _error(errno.EBUSY, path)  # the root itself
        parent = self._lookup(path.parent)
        if not isinstance(parent, _Dir):
            raise _error(errno.ENOTDIR, path)
        return parent, names[-1]

    def _info(self, name: str, node: _Node) -> FileInfo:
        is_dir = isinstance(node, _Dir)
        return FileInfo(
            name=name,
            is_dir=is_dir,
            size=len(node.data) if isinstance(node, _File) else 0,
            mtime=node.mtime,
            created=node.born,
            mode=_DIR_MODE if is_dir else _FILE_MODE,
            nlink=2 if is_dir else 1,
            unique=f"{self._device:x}g{node.ino:x}",
        )


class _MemoryDownload(Download):
    """Reads a file's buffer from a position of its own."""

    def __init__(self, data: bytearray, offset: int) -> None:
        # The buffer, not the node: a replace commit installs a new buffer and
        # this download keeps reading the one it opened.
        self._data: bytearray | None = data
        self._position = offset

    async def read(self, size: int) -> bytes:
        if self._data is None:
            raise _finished("download")
        start = self._position
        if start >= len(self._data):
            return b""
        # The view is released before returning: a bytearray with live views
        # cannot grow, and an in-place upload may append to it.
        with memoryview(self._data) as view:
            chunk = view[start : start + size].tobytes()
        self._position = start + len(chunk)
        return chunk

    def fileno(self) -> int | None:
        return None

    async def close(self) -> None:
        self._data = None


class _ReplaceUpload(Upload):
    """Builds a new buffer, installed at the path only on commit.

    ``placeholder`` is the empty file that reserves a new name ("create"):
    removed again if the upload is aborted.
    """

    def __init__(
        self, tree: MemoryPathIO, path: PurePosixPath, placeholder: _File | None = None
    ) -> None:
        self._tree = tree
        self._path = path
        self._placeholder = placeholder
        self._buffer: bytearray | None = bytearray()
        self._committed = False

    async def write(self, data: bytes | memoryview) -> None:
        if self._buffer is None:
            raise _finished("upload")
        self._buffer += data

    async def commit(self) -> None:
        if self._committed:
            return
        buffer, self._buffer = self._buffer, None
        if buffer is None:
            raise _finished("upload")
        self._tree._install(self._path, buffer)
        self._committed = True

    async def abort(self) -> None:
        if self._buffer is not None and self._placeholder is not None:
            self._tree._remove_placeholder(self._path, self._placeholder)
        self._buffer = None


class _InPlaceUpload(Upload):
    """Writes into an existing buffer: at the end ("append", ``position`` None) or at a position."""

    def __init__(self, node: _File, position: int | None) -> None:
        self._node: _File | None = node
        self._position = position

    async def write(self, data: bytes | memoryview) -> None:
        node = self._node
        if node is None:
            raise _finished("upload")
        buffer = node.data
        if self._position is None:
            buffer += data
        else:
            start = self._position
            if start > len(buffer):
                buffer.extend(bytes(start - len(buffer)))  # a hole, as on disk
            end = start + len(data)
            buffer[start:end] = data
            self._position = end
        node.mtime = time.time()

    async def commit(self) -> None:
        self._node = None

    async def abort(self) -> None:
        self._node = None  # what was written stays, as on disk


def _names(path: PurePosixPath) -> tuple[str, ...]:
    if not path.is_absolute() or ".." in path.parts:
        raise PathIOError(errno.EINVAL, "not an absolute, normalised path", str(path))
    return path.parts[1:]


def _child(parent: _Dir, name: str, path: PurePosixPath) -> _Node:
    node = parent.children.get(name)
    if node is None:
        raise _error(errno.ENOENT, path)
    return node


def _error(code: int, path: PurePosixPath) -> PathIOError:
    return PathIOError(code, os.strerror(code), str(path))


def _finished(what: str) -> PathIOError:
    return PathIOError(errno.EBADF, f"the {what} is already finished")
