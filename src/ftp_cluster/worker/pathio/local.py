"""Local-disk path IO: :class:`PathIO` (on the loop) and :class:`AsyncPathIO` (thread pool).

Both run the same blocking functions; they differ only in *where*
(:meth:`_LocalPathIO._run`). Every ``OSError`` leaves as a :class:`PathIOError`
carrying the original errno.

Symlinks: :meth:`~_LocalPathIO.confine` resolves them and refuses anything
that lands outside the root. Opened files additionally refuse a symlink as the
last component (``O_NOFOLLOW``), so a link swapped in after ``confine`` cannot
redirect a transfer; the price is that RETR/APPE/REST+STOR of a file that *is*
a symlink is refused (EACCES), while symlinked directories work everywhere.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import fcntl
import functools
import os
import secrets
import stat
import threading
from collections.abc import Callable, Sequence
from io import BufferedWriter, FileIO
from pathlib import PurePosixPath
from typing import TypeVar

from ftp_cluster.worker.pathio.base import (
    AbstractPathIO,
    Download,
    FileInfo,
    PathIOError,
    Upload,
    UploadMode,
    confine_lexically,
)
from ftp_cluster.worker.pathio.statx import Status, stat_entry

__all__ = ["TEMP_MARK", "AsyncPathIO", "PathIO"]

T = TypeVar("T")

#: Uploads arrive in network-sized pieces; coalescing them saves system calls.
_WRITE_BUFFER = 128 * 1024
#: Marks the hidden file a "replace" upload writes before it is renamed into place.
TEMP_MARK = ".ftp-cluster-upload-"
#: Room left for the mark and the random suffix within NAME_MAX (255 bytes).
_TEMP_STEM_BYTES = 200


class _LocalPathIO(AbstractPathIO):
    """The disk operations; subclasses decide where the blocking calls run."""

    @abc.abstractmethod
    async def _run(self, call: Callable[[], T], cleanup: Callable[[T], None] | None = None) -> T:
        """The result of the blocking ``call``, its OSError turned into PathIOError.

        ``cleanup`` disposes of a result that arrives after nobody waits for it
        any more (timeout, cancellation), so an abandoned open leaks nothing.
        """

    async def confine(self, root: PurePosixPath, path: PurePosixPath) -> PurePosixPath:
        return await self._run(functools.partial(_confine, root, path))

    async def info(self, path: PurePosixPath) -> FileInfo:
        return await self._run(functools.partial(_info, path))

    async def list(self, path: PurePosixPath) -> Sequence[FileInfo]:
        return await self._run(functools.partial(_list, path))

    async def mkdir(self, path: PurePosixPath) -> None:
        await self._run(functools.partial(os.mkdir, path))

    async def rmdir(self, path: PurePosixPath) -> None:
        await self._run(functools.partial(os.rmdir, path))

    async def unlink(self, path: PurePosixPath) -> None:
        await self._run(functools.partial(os.unlink, path))

    async def rename(self, source: PurePosixPath, destination: PurePosixPath) -> None:
        await self._run(functools.partial(os.rename, source, destination))

    async def set_modified(self, path: PurePosixPath, mtime: float) -> None:
        await self._run(functools.partial(_set_modified, path, mtime))

    async def entry(self, path: PurePosixPath) -> FileInfo:
        return await self._run(functools.partial(_entry, path))

    async def truncate(self, path: PurePosixPath, size: int) -> None:
        await self._run(functools.partial(_truncate, path, size))

    async def open_download(self, path: PurePosixPath, offset: int = 0) -> Download:
        opening = functools.partial(self._open_download, path, offset)
        return await self._run(opening, _LocalDownload.discard)

    async def open_upload(
        self, path: PurePosixPath, mode: UploadMode = "replace", offset: int = 0
    ) -> Upload:
        if mode == "replace":
            opening = functools.partial(self._open_replace, path)
        elif mode == "create":
            opening = functools.partial(self._open_new, path)
        else:
            opening = functools.partial(self._open_in_place, path, mode == "append", offset)
        return await self._run(opening, _LocalUpload.discard)

    # -- blocking halves of the openers (they need ``self`` for the handle) --

    def _open_download(self, path: PurePosixPath, offset: int) -> _LocalDownload:
        fd = _open_regular(path, os.O_RDONLY)
        try:
            # The descriptor's own offset matches, for callers that sendfile from it.
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return _LocalDownload(self, FileIO(fd, "r"), offset)

    def _open_in_place(self, path: PurePosixPath, append: bool, offset: int) -> _LocalUpload:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
        fd = _open_regular(path, flags)
        try:
            if not append:
                os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return _LocalUpload(self, _writer(fd), path, None)

    def _open_new(self, path: PurePosixPath) -> _LocalUpload:
        # O_EXCL makes the name ours; it is unlinked again if the upload fails.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        return _LocalUpload(self, _writer(fd), path, path)

    def _open_replace(self, path: PurePosixPath) -> _LocalUpload:
        try:
            current: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and stat.S_ISDIR(current.st_mode):
            raise PathIOError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        temp = path.parent / _temp_name(path.name)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            if current is not None and stat.S_ISREG(current.st_mode):
                # Keep the replaced file's permissions (minus setuid/setgid/sticky).
                os.fchmod(fd, stat.S_IMODE(current.st_mode) & 0o777)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return _LocalUpload(self, _writer(fd), path, temp)


class PathIO(_LocalPathIO):
    """Local disk, blocking calls made directly on the event loop.

    The fastest choice for local disks, where a ``stat`` or a 128 KiB read
    takes microseconds. It cannot honour ``timeout``: a stalled disk (dead NFS
    mount) stalls the whole worker. Use :class:`AsyncPathIO` for such storage.
    """

    async def _run(self, call: Callable[[], T], cleanup: Callable[[T], None] | None = None) -> T:
        return _translated(call)


class AsyncPathIO(_LocalPathIO):
    """Local disk, each blocking call run in the loop's default executor.

    Every operation (each read and write too) is bounded by ``timeout`` when
    set; one that overruns raises PathIOError ETIMEDOUT. The thread itself
    cannot be stopped: it finishes in the background, and a file it opens
    late is closed again.
    """

    async def _run(self, call: Callable[[], T], cleanup: Callable[[T], None] | None = None) -> T:
        loop = asyncio.get_running_loop()
        inner = loop.run_in_executor(None, _translated, call)
        try:
            # shield: a timeout or cancellation must not detach the result
            # from ``inner``, or nobody could clean it up.
            return await asyncio.wait_for(asyncio.shield(inner), self.timeout)
        except TimeoutError:
            _clean_up_when_done(inner, cleanup)
            raise PathIOError(
                errno.ETIMEDOUT, f"file-system operation took over {self.timeout} s"
            ) from None
        except asyncio.CancelledError:
            _clean_up_when_done(inner, cleanup)
            raise


class _LocalDownload(Download):
    """A file opened for reading; reads use ``pread`` at a position kept here.

    The position advances only when a read's data is delivered, so a read
    abandoned by a timeout never makes the next read skip bytes.
    """

    def __init__(self, runner: _LocalPathIO, file: FileIO, offset: int) -> None:
        self._runner = runner
        self._file = file
        self._position = offset
        # Serialises a thread still reading with close(): otherwise the freed
        # descriptor number could be reused and the late read hit another file.
        self._lock = threading.Lock()

    async def read(self, size: int) -> bytes:
        data = await self._runner._run(functools.partial(self._pread, size, self._position))
        self._position += len(data)
        return data

    def fileno(self) -> int | None:
        return None if self._file.closed else self._file.fileno()

    async def close(self) -> None:
        await self._runner._run(self.discard)

    def _pread(self, size: int, position: int) -> bytes:
        with self._lock:
            if self._file.closed:
                raise _finished("download")
            return os.pread(self._file.fileno(), size, position)

    def discard(self) -> None:
        with self._lock:
            self._file.close()


class _LocalUpload(Upload):
    """A file opened for writing: a hidden temporary (``temp``) or the target itself.

    ``temp`` is the file to remove on abort: the temporary of a "replace"
    upload, or the target of a "create" one (then ``temp == target``, and
    commit has nothing to rename).
    """

    def __init__(
        self,
        runner: _LocalPathIO,
        file: BufferedWriter,
        target: PurePosixPath,
        temp: PurePosixPath | None,
    ) -> None:
        self._runner = runner
        self._file = file
        self._target = target
        self._temp = temp
        self._committed = False
        self._lock = threading.Lock()  # as in _LocalDownload
        # Splicing writes on the loop, which only PathIO does anyway; and
        # Linux refuses to splice into a file opened for appending.
        appending = fcntl.fcntl(file.fileno(), fcntl.F_GETFL) & os.O_APPEND
        self._spliceable = isinstance(runner, PathIO) and not appending

    def fileno(self) -> int | None:
        if not self._spliceable or self._file.closed:
            return None
        return self._file.fileno()

    async def write(self, data: bytes | memoryview) -> None:
        await self._runner._run(functools.partial(self._write, data))

    async def commit(self) -> None:
        await self._runner._run(self._commit)

    async def abort(self) -> None:
        await self._runner._run(self.discard)

    def _write(self, data: bytes | memoryview) -> None:
        with self._lock:
            if self._file.closed:
                raise _finished("upload")
            self._file.write(data)

    def _commit(self) -> None:
        with self._lock:
            if self._committed:
                return
            if self._file.closed:
                raise _finished("upload")
            try:
                self._file.close()  # flushes; no fsync, as no FTP server waits for one
                if self._temp is not None and self._temp != self._target:
                    os.replace(self._temp, self._target)
            except BaseException:
                self._discard_locked()
                raise
            self._committed = True

    def discard(self) -> None:
        """Abort: close, and remove the temporary file of a "replace" upload.

        Best effort and idempotent; it is what error paths call.
        """
        with self._lock:
            self._discard_locked()

    def _discard_locked(self) -> None:
        if self._committed:
            return
        with contextlib.suppress(OSError):
            self._file.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)


# -- the blocking operations -------------------------------------------------


def _translated(call: Callable[[], T]) -> T:
    try:
        return call()
    except PathIOError:
        raise
    except OSError as error:
        code = error.errno if error.errno is not None else errno.EIO
        raise PathIOError(code, error.strerror or os.strerror(code), error.filename) from error
    except ValueError as error:  # os functions refuse NUL bytes this way
        raise PathIOError(errno.EINVAL, str(error)) from error


def _confine(root: PurePosixPath, path: PurePosixPath) -> PurePosixPath:
    confine_lexically(root, path)
    # realpath resolves every existing component and keeps a missing tail as
    # spelled (it has no "..", see above): that is the deepest existing
    # ancestor resolved, plus the names still to be created.
    real_root = _real_root(str(root))
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise PathIOError.outside_root(path)
    return path


@functools.lru_cache(maxsize=1024)
def _real_root(root: str) -> str:
    """``root`` resolved once per process: a stat per component, per call, saved.

    Should a root be moved later (a symlink in it pointed elsewhere), paths
    then resolve outside the root resolved here and are refused: it fails
    closed until the workers restart (``ftp-cluster reload``).
    """
    return os.path.realpath(root)


def _file_info(name: str, status: Status) -> FileInfo:
    return FileInfo(
        name=name,
        is_dir=stat.S_ISDIR(status.mode),
        size=status.size,
        mtime=status.mtime,
        mode=status.mode,
        nlink=status.nlink,
        unique=f"{status.dev:x}g{status.ino:x}",
        created=status.birth,
    )


def _info(path: PurePosixPath) -> FileInfo:
    status = stat_entry(path)
    if stat.S_ISLNK(status.mode):
        # A link confine() accepted: describe its target (CWD into a linked
        # directory needs is_dir), or the link itself when it dangles.
        with contextlib.suppress(OSError):
            status = stat_entry(path, follow_symlinks=True)
    return _file_info(path.name, status)


def _list(path: PurePosixPath) -> list[FileInfo]:
    infos: list[FileInfo] = []
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                # Not following links: a listing shows links as links and
                # never reveals anything about what they point to.
                status = stat_entry(entry.path)
            except FileNotFoundError:
                continue  # removed while we were listing
            infos.append(_file_info(entry.name, status))
    infos.sort(key=lambda info: info.name)
    return infos


def _entry(path: PurePosixPath) -> FileInfo:
    return _file_info(path.name, stat_entry(path))


def _truncate(path: PurePosixPath, size: int) -> None:
    # Through a descriptor opened without following a last-component link.
    fd = _open_regular(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _set_modified(path: PurePosixPath, mtime: float) -> None:
    current = os.stat(path)
    os.utime(path, ns=(current.st_atime_ns, round(mtime * 1e9)))


def _open_regular(path: PurePosixPath, flags: int) -> int:
    """Open a regular file, refusing a symlink as last component and anything not a file.

    O_NONBLOCK keeps the open of a FIFO from hanging the thread (or the loop);
    it is cleared again once we know the file is regular.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            refused = PathIOError(errno.EACCES, "refusing to open a symbolic link", str(path))
            raise refused from error
        raise
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind == stat.S_IFDIR:
            raise PathIOError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if kind != stat.S_IFREG:
            raise PathIOError(errno.EACCES, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _writer(fd: int) -> BufferedWriter:
    return BufferedWriter(FileIO(fd, "w"), _WRITE_BUFFER)


def _temp_name(name: str) -> str:
    stem = os.fsdecode(os.fsencode(name)[:_TEMP_STEM_BYTES])
    return f".{stem}{TEMP_MARK}{secrets.token_hex(6)}"


def _finished(what: str) -> PathIOError:
    return PathIOError(errno.EBADF, f"the {what} is already finished")


def _clean_up_when_done(inner: asyncio.Future[T], cleanup: Callable[[T], None] | None) -> None:
    if cleanup is None:
        return

    def done(future: asyncio.Future[T]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        # On the loop thread: it only closes a descriptor (and unlinks an
        # upload's temporary), and it is rare.
        with contextlib.suppress(OSError):
            cleanup(future.result())

    inner.add_done_callback(done)
