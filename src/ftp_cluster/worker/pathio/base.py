"""The path IO contract.

The FTP core works on *virtual* paths (``/pub/a.txt``). The asyncio layer maps
them to *real* paths under the user's root and calls a path IO with those. A
path IO must refuse any real path that resolves outside the given root,
symlinks included (:meth:`AbstractPathIO.confine`), raising
:class:`PathIOError`.

One path IO instance serves a whole server (every session); a
``MemoryPathIO`` instance therefore holds one server's tree.

Uploads are atomic: :meth:`AbstractPathIO.open_upload` in ``"replace"`` mode
writes to a hidden temporary file beside the target and only
:meth:`Upload.commit` puts it in place, so a failed upload never leaves a
half-written file where the old one was. ``"append"`` and ``"offset"`` modes
(APPE, REST+STOR) write in place, as resuming requires. ``"create"`` (STOU)
creates a file that must not exist yet, and removes it again on abort.

:class:`FileInfo` belongs to the protocol core (it decides what clients see
of a file); it is re-exported here for path IO implementations.
"""

from __future__ import annotations

import abc
import errno
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

from ftp_cluster.worker.protocol.files import FileInfo

__all__ = [
    "AbstractPathIO",
    "Download",
    "FileInfo",
    "PathIOError",
    "Upload",
    "UploadMode",
    "confine_lexically",
]

UploadMode = Literal["replace", "append", "offset", "create"]


class PathIOError(OSError):
    """A file-system operation failed; ``errno`` says why (ENOENT, EACCES...)."""

    @classmethod
    def outside_root(cls, path: object) -> PathIOError:
        return cls(errno.EACCES, "path is outside the user's root", str(path))


def confine_lexically(root: PurePosixPath, path: PurePosixPath) -> None:
    """Refuse ``path`` unless it is ``root`` or below it, spelled without ``..``.

    The symlink-free half of :meth:`AbstractPathIO.confine`, shared by every
    back end; a path with a NUL byte is refused too (no file system takes one).
    """
    if "\0" in str(path):
        raise PathIOError(errno.EINVAL, "path contains a NUL byte", str(path))
    if ".." in path.parts or not path.is_relative_to(root):
        raise PathIOError.outside_root(path)


class Upload(abc.ABC):
    """A file being written; exactly one of commit/abort must be awaited."""

    @abc.abstractmethod
    async def write(self, data: bytes | memoryview) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> None:
        """Flush and put the data in place (rename over the target for "replace")."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Throw the data away ("replace") or keep what was written (in place)."""

    def fileno(self) -> int | None:
        """A descriptor to splice received data into, at its position, instead of :meth:`write`.

        ``None`` (the default) where only :meth:`write` will do.
        """
        return None


class Download(abc.ABC):
    """A file being read."""

    @abc.abstractmethod
    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""

    @abc.abstractmethod
    def fileno(self) -> int | None:
        """A real descriptor for ``sendfile``, or ``None`` (memory)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class AbstractPathIO(abc.ABC):
    """Asynchronous file-system operations on real paths.

    ``timeout`` bounds each operation (``path_timeout``); implementations that
    block the loop cannot honour it and document so.
    """

    def __init__(self, *, timeout: float | None = None) -> None:
        self.timeout = timeout

    def real_root(self, configured: Path) -> PurePosixPath:
        """The real path behind a user's virtual ``/`` (absolute, symlinks resolved)."""
        return PurePosixPath(os.path.realpath(configured))

    @abc.abstractmethod
    async def confine(self, root: PurePosixPath, path: PurePosixPath) -> PurePosixPath:
        """Return ``path`` if it (after symlinks) stays under ``root``, else raise.

        ``path`` need not exist; its deepest existing ancestor is resolved.
        """

    @abc.abstractmethod
    async def info(self, path: PurePosixPath) -> FileInfo:
        """Stat one entry (raises PathIOError ENOENT when missing)."""

    @abc.abstractmethod
    async def list(self, path: PurePosixPath) -> Sequence[FileInfo]:
        """Entries of a directory, without ``.`` and ``..``, sorted by name."""

    @abc.abstractmethod
    async def mkdir(self, path: PurePosixPath) -> None:
        """Create one directory; its parent must exist."""

    @abc.abstractmethod
    async def rmdir(self, path: PurePosixPath) -> None:
        """Remove an empty directory."""

    @abc.abstractmethod
    async def unlink(self, path: PurePosixPath) -> None: ...

    @abc.abstractmethod
    async def rename(self, source: PurePosixPath, destination: PurePosixPath) -> None: ...

    @abc.abstractmethod
    async def set_modified(self, path: PurePosixPath, mtime: float) -> None:
        """Set the modification time (MFMT); the access time is kept."""

    async def entry(self, path: PurePosixPath) -> FileInfo:
        """Stat one entry without following a link (what a listing shows of it).

        The default, for back ends without links, is :meth:`info`.
        """
        return await self.info(path)

    async def truncate(self, path: PurePosixPath, size: int) -> None:
        """Cut a regular file back to ``size`` bytes (an in-place upload past its quota).

        Back ends that cannot raise PathIOError ENOTSUP; the data then stays.
        """
        raise PathIOError(errno.ENOTSUP, "truncation is not supported here", str(path))

    @abc.abstractmethod
    async def open_download(self, path: PurePosixPath, offset: int = 0) -> Download:
        """Open a regular file for reading from ``offset`` (past the end: reads nothing)."""

    @abc.abstractmethod
    async def open_upload(
        self, path: PurePosixPath, mode: UploadMode = "replace", offset: int = 0
    ) -> Upload:
        """Open a file for writing; the parent directory must exist (else ENOENT).

        ``"create"`` raises EEXIST if ``path`` exists (STOU then tries another name).
        """
