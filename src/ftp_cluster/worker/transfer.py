"""One transfer: open the file, announce it, get the data channel, move, finish.

The order is the protocol's: the file is opened first, so that a missing or
forbidden one is refused without a preliminary reply; then the 150 (its
text is the core's, :meth:`Session.opening`); then the data connection; then
the bytes, which the :class:`~.datachannel.DataChannel` moves and paces.
Uploads are committed only when the whole stream arrived (a "replace"
upload then renames its temporary into place), and aborted otherwise.
Under a disk quota an upload first reserves its new file, then its bytes
as they arrive (:mod:`.quota`); once it ends, the tally is set to what it
left on disk: the old content's size is freed when a replacement is put in
place, and reserved bytes not written are given back.

A watchdog ends a transfer that moves no byte for ``socket_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from ftp_cluster.worker.ascii import AsciiDownload, AsciiUpload
from ftp_cluster.worker.datachannel import DataChannel, Moved, NotProtected
from ftp_cluster.worker.filesystem import UserFileSystem, failure_from
from ftp_cluster.worker.pathio.base import Upload, UploadMode
from ftp_cluster.worker.protocol.requests import Done, Failed, Failure, Outcome, Transfer
from ftp_cluster.worker.quota import QuotaExceeded, QuotaUnavailable, UploadQuota
from ftp_cluster.worker.stats import WorkerStats

__all__ = ["TransferJob"]


class _Watchdog:
    """Cancels a task that moves no byte for ``timeout`` seconds."""

    __slots__ = ("_handle", "_last", "_progress", "_task", "_timeout", "fired")

    def __init__(self, timeout: float | None, progress: Callable[[], int]) -> None:
        self._timeout = timeout
        self._progress = progress
        self._task = asyncio.current_task()
        self._handle: asyncio.TimerHandle | None = None
        self._last = -1
        self.fired = False

    def __enter__(self) -> _Watchdog:
        self._arm()
        return self

    def __exit__(self, *_: object) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _arm(self) -> None:
        if self._timeout is not None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self._timeout, self._check)

    def _check(self) -> None:
        moved = self._progress()
        if moved == self._last and self._task is not None:
            self.fired = True
            self._task.cancel()
            return
        self._last = moved
        self._arm()


#: Gets the transfer's data connection as a channel that reports to ``moved``.
OpenChannel = Callable[[Moved], Awaitable[DataChannel]]


@dataclass(slots=True)
class TransferJob:
    """One transfer and what it needs from its session.

    ``announce(name)`` sends the preliminary reply (``name``: the file STOU
    created); ``open_channel`` gets the data connection.
    """

    request: Transfer
    fs: UserFileSystem
    announce: Callable[[str | None], None]
    open_channel: OpenChannel
    counters: WorkerStats  # the server's: bytes moved are counted as they move
    socket_timeout: float | None
    #: The file STOU created, and the size of the one a "replace" upload replaced.
    created: PurePosixPath | None = None
    replaced: int | None = None

    async def run(self) -> Outcome:
        """Carry the transfer out; never raises OSError."""
        request = self.request
        payload = request.payload
        if payload is not None:
            return await self._connected(lambda channel: channel.send_bytes(payload))
        try:
            if request.is_upload:
                return await self._upload()
            download = await self.fs.open_download(request.path, request.offset)
        except OSError as error:
            return failure_from(error)
        if request.ascii:
            download = AsciiDownload(download)
        try:
            return await self._connected(
                lambda channel: channel.send_file(download, request.offset)
            )
        except OSError as error:
            return failure_from(error)
        finally:
            await download.close()

    async def _upload(self) -> Outcome:
        request = self.request
        mode = self._mode()
        quota = self.fs.quota
        if quota is None:
            return await self._store(mode, None)
        # What is there now: in-place modes keep and extend it; "replace"
        # keeps it counted until the new content takes its place.
        old = None if request.kind == "STOU" else await self.fs.size(request.path)
        # Replacing keeps the count: the temporary beside the old file is no new file.
        new_file = 1 if old is None else 0
        free = max(0, (old or 0) - request.offset) if mode == "offset" else 0
        try:
            await quota.reserve(0, new_file)
        except QuotaExceeded:
            return Failed(Failure.QUOTA_EXCEEDED)
        except QuotaUnavailable:
            return Failed(Failure.QUOTA_UNAVAILABLE)
        account = UploadQuota(quota, free)
        outcome: Outcome = Failed(Failure.IO_ERROR)
        try:
            outcome = await self._store(mode, account)
            if outcome == Failed(Failure.QUOTA_EXCEEDED) and mode in ("append", "offset"):
                # In place: a refused upload's data goes too, as a temporary's would.
                await self.fs.restore(request.path, old)
        finally:
            await self._settle(mode, account, old, new_file, isinstance(outcome, Done))
        return outcome

    async def _store(self, mode: UploadMode, account: UploadQuota | None) -> Outcome:
        request = self.request
        name: str | None = None
        upload: Upload
        try:
            if request.kind == "STOU":
                name, upload = await self.fs.create_unique(request.path)
                self.created = request.path.parent / name
            else:
                upload = await self.fs.open_upload(request.path, mode, request.offset)
        except OSError as error:
            return failure_from(error)
        if request.ascii:
            upload = AsciiUpload(upload)
        committed = False
        try:
            outcome = await self._connected(
                lambda channel: channel.receive_file(upload, account), name
            )
            if isinstance(outcome, Done):
                if account is not None and mode == "replace":
                    # Right before the rename: the content it replaces.
                    self.replaced = await self.fs.size(request.path)
                await upload.commit()
                committed = True
            return outcome
        except QuotaExceeded:
            return Failed(Failure.QUOTA_EXCEEDED)  # its data goes with the abort
        except QuotaUnavailable:
            return Failed(Failure.QUOTA_UNAVAILABLE)
        except OSError as error:
            return failure_from(error)
        finally:
            if not committed:
                await upload.abort()

    async def _settle(
        self, mode: UploadMode, account: UploadQuota, old: int | None, new_file: int, done: bool
    ) -> None:
        """Bring the tally in line with what the upload left on disk (see the module doc)."""
        fs, request = self.fs, self.request
        quota = account.quota
        if mode in ("replace", "create"):
            if not done:
                await quota.adjust(-account.taken, -new_file)
                return
            path = self.created or request.path
            stored = await fs.size(path) or 0
            replaced = self.replaced if mode == "replace" else None
            freed = replaced if replaced is not None else 0
            # Nothing replaced: the result is a new file (the old one may have
            # been deleted meanwhile, and left the tally then).
            files = (1 if replaced is None else 0) - new_file
            await quota.adjust(stored - account.taken - freed, files)
            return
        # In place (APPE, REST+STOR): what was written stays, done or not.
        size = await fs.size(request.path)
        growth = (size or 0) - (old or 0)
        files = 0 if size is not None or not new_file else -new_file
        await quota.adjust(growth - account.taken, files)

    def _mode(self) -> UploadMode:
        if self.request.kind == "STOU":
            return "create"
        if self.request.kind == "APPE":
            return "append"
        return "offset" if self.request.offset else "replace"

    async def _connected(
        self, move: Callable[[DataChannel], Awaitable[None]], name: str | None = None
    ) -> Outcome:
        """Announce, get the data channel, run ``move`` on it, end it."""
        self.announce(name)
        moved = self._uploaded if self.request.is_upload else self._downloaded
        try:
            channel = await self.open_channel(moved)
        except NotProtected:
            return Failed(Failure.DATA_NOT_PROTECTED)
        except (OSError, TimeoutError):
            return Failed(Failure.NO_DATA_CONNECTION)
        progress = self.request.progress
        try:
            with _Watchdog(self.socket_timeout, lambda: progress.moved) as dog:
                try:
                    await move(channel)
                except asyncio.CancelledError:
                    if not dog.fired:
                        raise
                    _uncancel()
                    return Failed(Failure.TIMEOUT)
        except ConnectionError:
            return Failed(Failure.CONNECTION_LOST)
        finally:
            await channel.close()
        return Done()

    def _uploaded(self, amount: int) -> None:
        self.request.progress.moved += amount
        self.counters.bytes_uploaded += amount

    def _downloaded(self, amount: int) -> None:
        self.request.progress.moved += amount
        self.counters.bytes_downloaded += amount


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
