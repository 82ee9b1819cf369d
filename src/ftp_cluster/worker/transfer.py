"""One transfer: open the file, announce it, get the data channel, move, finish.

The order is the protocol's: the file is opened first, so that a missing or
forbidden one is refused without a preliminary reply; then the 150 (its
text is the core's, :meth:`Session.opening`); then the data connection; then
the bytes, which the :class:`~.datachannel.DataChannel` moves and paces.
Uploads are committed only when the whole stream arrived (a "replace"
upload then renames its temporary into place), and aborted otherwise.

A watchdog ends a transfer that moves no byte for ``socket_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ftp_cluster.worker.ascii import AsciiDownload, AsciiUpload
from ftp_cluster.worker.datachannel import DataChannel, Moved, NotProtected
from ftp_cluster.worker.filesystem import UserFileSystem, failure_from
from ftp_cluster.worker.pathio.base import Upload, UploadMode
from ftp_cluster.worker.protocol.requests import Done, Failed, Failure, Outcome, Transfer
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
        name: str | None = None
        upload: Upload
        if request.kind == "STOU":
            name, upload = await self.fs.create_unique(request.path)
        else:
            upload = await self.fs.open_upload(request.path, self._mode(), request.offset)
        if request.ascii:
            upload = AsciiUpload(upload)
        committed = False
        try:
            outcome = await self._connected(lambda channel: channel.receive_file(upload), name)
            if isinstance(outcome, Done):
                await upload.commit()
                committed = True
            return outcome
        except OSError as error:
            return failure_from(error)
        finally:
            if not committed:
                await upload.abort()

    def _mode(self) -> UploadMode:
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
