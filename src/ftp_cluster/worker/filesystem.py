"""A user's view of the path IO: virtual paths in, confined real paths used.

Also turns file-system errors into the protocol core's :class:`Failure`
vocabulary, and carries out the core's :class:`FileQuery` and
:class:`FileChange` requests.
"""

from __future__ import annotations

import errno
import logging
from pathlib import PurePosixPath

from ftp_cluster.worker.pathio.base import AbstractPathIO
from ftp_cluster.worker.protocol.paths import real_path
from ftp_cluster.worker.protocol.requests import (
    Done,
    Failed,
    Failure,
    FileChange,
    FileQuery,
    Outcome,
)

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


def failure_from(error: OSError) -> Failed:
    """The core's words for an OS error; unexpected ones are logged, not shown."""
    reason = _FAILURES.get(error.errno or 0)
    if reason is None:
        log.warning("file-system error: %s", error)
        return Failed(Failure.IO_ERROR)
    return Failed(reason)


class UserFileSystem:
    """File operations for one logged-in user, confined to the user's real root."""

    __slots__ = ("path_io", "root")

    def __init__(self, path_io: AbstractPathIO, root: PurePosixPath) -> None:
        self.path_io = path_io
        self.root = root

    async def real(self, virtual: PurePosixPath) -> PurePosixPath:
        """The confined real path (raises PathIOError when it escapes the root)."""
        return await self.path_io.confine(self.root, real_path(self.root, virtual))

    async def query(self, request: FileQuery) -> Outcome:
        try:
            return Done(await self.path_io.info(await self.real(request.path)))
        except OSError as error:
            return failure_from(error)

    async def change(self, request: FileChange) -> Outcome:
        try:
            path = await self.real(request.path)
            match request.verb:
                case "MKD":
                    await self.path_io.mkdir(path)
                case "RMD":
                    await self.path_io.rmdir(path)
                case "DELE":
                    await self.path_io.unlink(path)
                case "RNTO":
                    assert request.target is not None
                    await self.path_io.rename(path, await self.real(request.target))
        except OSError as error:
            return failure_from(error)
        return Done()
