"""A user's view of the path IO: virtual paths in, confined real paths used.

Everything the I/O layer does to files for a session goes through here
(queries, changes, listings, opening files for transfers), so every path is
confined to the user's root on the way (:meth:`AbstractPathIO.confine`),
and nothing reaches the path IO by a side door. Also turns file-system
errors into the protocol core's :class:`Failure` vocabulary, and keeps the
user's disk tally (:mod:`.quota`) in line with DELE and RNTO over a file.
"""

from __future__ import annotations

import errno
import logging
import secrets
import stat
import time
from pathlib import PurePosixPath

from ftp_cluster.worker.pathio.base import AbstractPathIO, Download, Upload, UploadMode
from ftp_cluster.worker.protocol.files import FileInfo, Listing
from ftp_cluster.worker.protocol.paths import real_path
from ftp_cluster.worker.protocol.requests import (
    Done,
    Failed,
    Failure,
    FileChange,
    FileQuery,
    Outcome,
)
from ftp_cluster.worker.quota import UserQuota

__all__ = ["UserFileSystem", "failure_from"]

log = logging.getLogger("ftp_cluster.worker")

_FAILURES: dict[int, Failure] = {
    errno.ENOENT: Failure.NOT_FOUND,
    errno.ENOTDIR: Failure.NOT_A_DIRECTORY,
    errno.EISDIR: Failure.IS_A_DIRECTORY,
    errno.EEXIST: Failure.EXISTS,
    errno.ENOTEMPTY: Failure.NOT_EMPTY,
    errno.EACCES: Failure.DENIED,
    errno.EPERM: Failure.DENIED,
    errno.ELOOP: Failure.DENIED,
    errno.ETIMEDOUT: Failure.TIMEOUT,
}
#: Names STOU tries after the one it was given, each with a random suffix.
_UNIQUE_ATTEMPTS = 8


def failure_from(error: OSError) -> Failed:
    """The core's words for an OS error; unexpected ones are logged, not shown."""
    reason = _FAILURES.get(error.errno or 0)
    if reason is None:
        log.warning("file-system error: %s", error)
        return Failed(Failure.IO_ERROR)
    return Failed(reason)


class UserFileSystem:
    """File operations for one logged-in user, confined to the user's real root.

    ``quota``: the user's disk quota, ``None`` when the user has none.
    """

    __slots__ = ("_path_io", "quota", "root")

    def __init__(
        self, path_io: AbstractPathIO, root: PurePosixPath, quota: UserQuota | None = None
    ) -> None:
        self._path_io = path_io
        self.root = root
        self.quota = quota

    async def _real(self, virtual: PurePosixPath) -> PurePosixPath:
        """The confined real path (raises PathIOError when it escapes the root)."""
        return await self._path_io.confine(self.root, real_path(self.root, virtual))

    # -- requests of the core ---------------------------------------------------------

    async def query(self, request: FileQuery) -> Outcome:
        try:
            return Done(await self._path_io.info(await self._real(request.path)))
        except OSError as error:
            return failure_from(error)

    async def change(self, request: FileChange) -> Outcome:
        path_io = self._path_io
        # What DELE removes, or what RNTO replaces: its bytes leave the tally.
        gone: FileInfo | None = None
        try:
            path = await self._real(request.path)
            match request.verb:
                case "MKD":
                    await path_io.mkdir(path)
                case "RMD":
                    await path_io.rmdir(path)  # empty directories only: no bytes change
                case "DELE":
                    if self.quota is not None:
                        gone = await self._regular(path)
                    await path_io.unlink(path)
                case "RNTO":
                    assert request.target is not None
                    target = await self._real(request.target)
                    if self.quota is not None and target != path:
                        gone = await self._regular(target)
                    await path_io.rename(path, target)
                case "MFMT":
                    assert request.mtime is not None
                    await path_io.set_modified(path, request.mtime)
        except OSError as error:
            return failure_from(error)
        if gone is not None and self.quota is not None:
            await self.quota.adjust(-gone.size, -1)
        return Done()

    async def _regular(self, real: PurePosixPath) -> FileInfo | None:
        """``real``'s entry if it is a regular file (what the tally counts), else ``None``."""
        try:
            # Not following a link: the tally never counted what links point to.
            info = await self._path_io.entry(real)
        except OSError:
            return None
        return info if stat.S_ISREG(info.mode) else None

    async def restore(self, virtual: PurePosixPath, size: int | None) -> None:
        """Undo an in-place upload: back to ``size`` bytes, or gone if it was new (``None``).

        Best effort: what cannot be undone stays, and the tally counts it.
        """
        try:
            real = await self._real(virtual)
            if size is None:
                await self._path_io.unlink(real)
            else:
                await self._path_io.truncate(real, size)
        except OSError as error:
            log.info("could not undo the upload to %s: %s", virtual, error)

    async def size(self, virtual: PurePosixPath) -> int | None:
        """The size of the regular file at ``virtual``; ``None`` if there is none."""
        try:
            info = await self._regular(await self._real(virtual))
        except OSError:
            return None
        return None if info is None else info.size

    async def listing(self, virtual: PurePosixPath) -> Outcome:
        """What is at ``virtual``: a directory's entries, or the one file."""
        path_io = self._path_io
        try:
            real = await self._real(virtual)
            here = await path_io.info(real)
            if not here.is_dir:
                return Done(Listing(here, (here,), here, time.time()))
            entries = await path_io.list(real)
            parent = here
            if virtual != virtual.parent:
                parent = await path_io.info(await self._real(virtual.parent))
        except OSError as error:
            return failure_from(error)
        return Done(Listing(here, entries, parent, time.time()))

    # -- files for transfers (OSError is the caller's to turn into a Failure) ----------

    async def open_download(self, virtual: PurePosixPath, offset: int) -> Download:
        return await self._path_io.open_download(await self._real(virtual), offset)

    async def open_upload(self, virtual: PurePosixPath, mode: UploadMode, offset: int) -> Upload:
        return await self._path_io.open_upload(await self._real(virtual), mode, offset)

    async def create_unique(self, virtual: PurePosixPath) -> tuple[str, Upload]:
        """A new file named ``virtual.name``, or that name with a random suffix (STOU).

        Creation is exclusive, so two uploads never get the same name.
        """
        name = virtual.name
        for _ in range(_UNIQUE_ATTEMPTS):
            try:
                upload = await self.open_upload(virtual.parent / name, "create", 0)
            except OSError as error:
                if error.errno != errno.EEXIST:
                    raise
                name = f"{virtual.name}.{secrets.token_hex(4)}"
                continue
            return name, upload
        raise FileExistsError(errno.EEXIST, "no unique name found", str(virtual))
