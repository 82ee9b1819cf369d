"""Moving bytes over a data connection: downloads, uploads and listings.

Downloads from real files use ``os.sendfile`` straight from the page cache
into the socket; uploads to real files (:class:`PathIO`, not appending)
``os.splice`` from the socket through the worker's pipe into the file, others
``recv_into`` one reusable buffer. Progress feeds a
watchdog (``socket_timeout`` without a byte moved ends the transfer), the
server's counters, and the throttle, which is asked once per chunk.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ftp_cluster.worker import sockio
from ftp_cluster.worker.datachannel import PassiveListener, connect_active
from ftp_cluster.worker.filesystem import UserFileSystem, failure_from
from ftp_cluster.worker.pathio.base import Download, FileInfo, Upload, UploadMode
from ftp_cluster.worker.protocol import listing
from ftp_cluster.worker.protocol.replies import Reply
from ftp_cluster.worker.protocol.requests import Done, Failed, Failure, Outcome, Transfer
from ftp_cluster.worker.protocol.session import Session
from ftp_cluster.worker.throttle import Throttle

__all__ = ["Counters", "TransferJob"]

_UPLOAD_BUFFER = 256 * 1024
_MEMORY_READ = 256 * 1024


@dataclass(slots=True)
class Counters:
    """Bytes moved; one instance per server, shared by its sessions."""

    bytes_read: int = 0
    bytes_written: int = 0


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


@dataclass(slots=True)
class TransferJob:
    """One transfer's resources: everything it needs from its connection."""

    request: Transfer
    session: Session
    fs: UserFileSystem
    throttle: Throttle
    counters: Counters
    send_reply: Callable[[Reply], None]
    passive: PassiveListener | None
    local_host: str
    wait_timeout: float | None
    socket_timeout: float | None
    pipe: sockio.Pipe | None = None  # the worker's, for uploads that can splice
    moved: int = 0

    async def run(self) -> Outcome:
        """Open the source or target, then connect and move; never raises OSError."""
        request = self.request
        try:
            real = await self.fs.real(request.path)
            if request.is_listing:
                payload = await self._listing(real)
                return await self._connected(lambda sock: self._send_bytes(sock, payload))
            if request.is_upload:
                upload = await self.fs.path_io.open_upload(real, self._mode(), request.offset)
                return await self._upload(upload)
            download = await self.fs.path_io.open_download(real, request.offset)
        except OSError as error:
            return failure_from(error)
        try:
            return await self._connected(lambda sock: self._download(sock, download))
        except OSError as error:
            return failure_from(error)
        finally:
            await download.close()

    def _mode(self) -> UploadMode:
        if self.request.kind == "APPE":
            return "append"
        return "offset" if self.request.offset else "replace"

    async def _upload(self, upload: Upload) -> Outcome:
        committed = False
        try:
            outcome = await self._connected(lambda sock: self._receive(sock, upload))
            if isinstance(outcome, Done):
                await upload.commit()
                committed = True
            return outcome
        except OSError as error:
            return failure_from(error)
        finally:
            if not committed:
                await upload.abort()

    async def _connected(self, move: Callable[[socket.socket], Awaitable[None]]) -> Outcome:
        """Send the preliminary reply, get the data connection, run ``move`` on it."""
        self.send_reply(self.request.preliminary)
        try:
            sock = await self._data_socket()
        except (OSError, TimeoutError):
            return Failed(Failure.NO_DATA_CONNECTION)
        try:
            with _Watchdog(self.socket_timeout, lambda: self.moved) as dog:
                try:
                    await move(sock)
                except asyncio.CancelledError:
                    if not dog.fired:
                        raise
                    _uncancel()
                    return Failed(Failure.TIMEOUT)
        except ConnectionError:
            return Failed(Failure.CONNECTION_LOST)
        finally:
            sock.close()
        return Done()

    async def _data_socket(self) -> socket.socket:
        endpoint = self.request.endpoint
        if endpoint.passive:
            if self.passive is None:
                raise ConnectionError("no passive listener")
            return await self.passive.connection(self.wait_timeout)
        return await connect_active(
            endpoint.host, endpoint.port, self.local_host, self.wait_timeout
        )

    # -- the movers ---------------------------------------------------------

    async def _download(self, sock: socket.socket, download: Download) -> None:
        fd = download.fileno()
        if fd is None:
            await self._download_buffered(sock, download)
            return
        offset = self.request.offset
        throttle = self.throttle
        while True:
            count = throttle.chunk
            if not throttle.unlimited:
                # Pay only for bytes the file still has: a whole chunk paid
                # for a short tail is bandwidth every other transfer loses.
                left = os.fstat(fd).st_size - offset
                if left <= 0:
                    return
                count = min(count, left)
                await throttle.pace(count)
            sent = await sockio.sendfile(sock, fd, offset, count, self._sent)
            offset += sent
            if sent < count:
                return

    async def _download_buffered(self, sock: socket.socket, download: Download) -> None:
        loop = asyncio.get_running_loop()
        size = min(self.throttle.chunk, _MEMORY_READ)
        while data := await download.read(size):
            if not self.throttle.unlimited:
                await self.throttle.pace(len(data))
            await loop.sock_sendall(sock, data)
            self._sent(len(data))

    async def _receive(self, sock: socket.socket, upload: Upload) -> None:
        fd = upload.fileno()
        if fd is not None and self.pipe is not None and sockio.CAN_SPLICE:
            await self._receive_spliced(sock, self.pipe, fd)
            return
        buffer = memoryview(bytearray(min(self.throttle.chunk, _UPLOAD_BUFFER)))
        while True:
            received, eof = await sockio.fill(sock, buffer, self._received)
            if received:
                await upload.write(buffer[:received])
                if not self.throttle.unlimited:
                    await self.throttle.pace(received)
            if eof:
                return

    async def _receive_spliced(self, sock: socket.socket, pipe: sockio.Pipe, fd: int) -> None:
        throttle = self.throttle
        while True:
            received, eof = await sockio.splice(sock, pipe, fd, throttle.chunk, self._received)
            if received and not throttle.unlimited:
                await throttle.pace(received)
            if eof:
                return

    async def _send_bytes(self, sock: socket.socket, payload: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(sock, payload)
        self._sent(len(payload))

    def _sent(self, amount: int) -> None:
        self.moved += amount
        self.counters.bytes_written += amount

    def _received(self, amount: int) -> None:
        self.moved += amount
        self.counters.bytes_read += amount

    # -- listings -----------------------------------------------------------

    async def _listing(self, real: PurePosixPath) -> bytes:
        path_io = self.fs.path_io
        info = await path_io.info(real)
        kind = self.request.kind
        if not info.is_dir:
            if kind == "MLSD":
                raise NotADirectoryError(20, "not a directory")
            return self._render(self.request.path.parent, [info], info, info)
        entries = await path_io.list(real)
        parent = info
        if self.request.path != self.request.path.parent:
            parent = await path_io.info(await self.fs.real(self.request.path.parent))
        return self._render(self.request.path, entries, info, parent)

    def _render(
        self, directory: PurePosixPath, entries: Sequence[FileInfo], here: FileInfo, up: FileInfo
    ) -> bytes:
        kind = self.request.kind
        if kind == "NLST":
            return listing.join_lines(entry.name for entry in entries)
        if kind == "LIST":
            now = time.time()
            return listing.join_lines(listing.list_line(entry, now) for entry in entries)
        facts = self.session.facts
        lines = [
            listing.mlsx_line(facts(directory, here, "cdir"), "."),
            listing.mlsx_line(facts(directory.parent, up, "pdir"), ".."),
        ]
        lines += [listing.mlsx_line(facts(directory / e.name, e), e.name) for e in entries]
        return listing.join_lines(lines)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
