"""A data channel owns one data connection: how its bytes move, their pace, its end.

The transfer logic (:mod:`.transfer`) opens files and says what to move; a
:class:`DataChannel` moves it. :class:`DataChannel` itself does everything
through two primitives, sending a buffer and filling one, so a channel that
wraps the connection (FTPS: TLS) implements just those and :meth:`close`.
:class:`SocketChannel`, a plain TCP socket, adds the zero-copy paths:
downloads from real files use ``os.sendfile`` straight from the page cache
into the socket; uploads into real files (see ``Upload.fileno``) ``os.splice``
from the socket through the worker's pipe into the file. The rest, and every
file without a descriptor (memory, ASCII translation), takes the buffered
path.

Every channel paces by its :class:`~.throttle.Throttle`, one reservation per
chunk, and reports every byte moved to ``moved`` (the transfer's progress,
its watchdog and the server's counters). An upload under a disk quota
(:class:`~.quota.UploadQuota`) receives no byte the quota has not granted:
at its edge one more byte is read, and if the peer has one the upload fails
with :class:`~.quota.QuotaExceeded`.
"""

from __future__ import annotations

import abc
import asyncio
import os
import socket
from collections.abc import Callable

from ftp_cluster.worker import sockio
from ftp_cluster.worker.pathio.base import Download, Upload
from ftp_cluster.worker.quota import QuotaExceeded, UploadQuota
from ftp_cluster.worker.throttle import Throttle

__all__ = ["DataChannel", "NotProtected", "SocketChannel"]

_UPLOAD_BUFFER = 256 * 1024
_BUFFERED_READ = 256 * 1024
#: Bytes spliced per quota check (one pipe's worth; the reservation behind it is larger).
_QUOTA_STEP = 1 << 20

Moved = Callable[[int], None]


class NotProtected(ConnectionError):
    """A data connection that must be protected is not, or not by its own session."""


class DataChannel(abc.ABC):
    """One data connection, paced by ``throttle``; each byte moved goes to ``moved``."""

    def __init__(self, throttle: Throttle, moved: Moved) -> None:
        self.throttle = throttle
        self.moved = moved

    # -- what a channel must provide ------------------------------------------------

    @abc.abstractmethod
    async def _send(self, data: bytes | memoryview) -> None:
        """Send all of ``data``."""

    @abc.abstractmethod
    async def _fill(self, buffer: memoryview) -> tuple[int, bool]:
        """Receive into ``buffer`` until full or the peer's end: ``(filled, at_eof)``.

        Calls ``moved`` for what it receives as it goes.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """End the connection (for a download, that tells the client it is complete)."""

    # -- transfers ---------------------------------------------------------------

    async def send_bytes(self, payload: bytes) -> None:
        """Send a listing (unpaced: listings are small and not file data)."""
        await self._send(payload)
        self.moved(len(payload))

    async def send_file(self, source: Download, offset: int) -> None:
        """Send ``source`` from its current position (``offset`` in the file) to its end."""
        throttle = self.throttle
        size = min(throttle.chunk, _BUFFERED_READ)
        while data := await source.read(size):
            if not throttle.unlimited:
                await throttle.pace(len(data))
            await self._send(data)
            self.moved(len(data))

    async def receive_file(self, target: Upload, quota: UploadQuota | None = None) -> None:
        """Write what the peer sends into ``target`` until the peer ends the stream."""
        throttle = self.throttle
        buffer = memoryview(bytearray(min(throttle.chunk, _UPLOAD_BUFFER)))
        while True:
            if quota is None:
                received, eof = await self._fill(buffer)
            else:
                allowed = await quota.allow(len(buffer))
                if not allowed:
                    await self._at_quota_edge()
                    return
                received, eof = await self._fill(buffer[:allowed])
                quota.wrote(received)
            if received:
                await target.write(buffer[:received])
                if not throttle.unlimited:
                    await throttle.pace(received)
            if eof:
                return

    async def _at_quota_edge(self) -> None:
        """The quota is full: fine if the stream ends here, else the upload fails."""
        received, _ = await self._fill(memoryview(bytearray(1)))
        if received:
            raise QuotaExceeded


class SocketChannel(DataChannel):
    """A plain TCP data connection: zero-copy wherever the file allows it.

    ``pipe`` is the worker's, for splicing uploads (``None``: never splice).
    """

    def __init__(
        self, sock: socket.socket, throttle: Throttle, moved: Moved, pipe: sockio.Pipe | None
    ) -> None:
        super().__init__(throttle, moved)
        self.sock = sock
        self._pipe = pipe

    async def _send(self, data: bytes | memoryview) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def _fill(self, buffer: memoryview) -> tuple[int, bool]:
        return await sockio.fill(self.sock, buffer, self.moved)

    async def close(self) -> None:
        self.sock.close()

    async def send_file(self, source: Download, offset: int) -> None:
        fd = source.fileno()
        if fd is None:
            await super().send_file(source, offset)
            return
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
            sent = await sockio.sendfile(self.sock, fd, offset, count, self.moved)
            offset += sent
            if sent < count:
                return

    async def receive_file(self, target: Upload, quota: UploadQuota | None = None) -> None:
        fd = target.fileno()
        pipe = self._pipe
        if fd is None or pipe is None or not sockio.CAN_SPLICE:
            await super().receive_file(target, quota)
            return
        throttle = self.throttle
        while True:
            count = throttle.chunk
            if quota is not None:
                count = await quota.allow(min(count, _QUOTA_STEP))
                if not count:
                    await self._at_quota_edge()
                    return
            received, eof = await sockio.splice(self.sock, pipe, fd, count, self.moved)
            if quota is not None:
                quota.wrote(received)
            if received and not throttle.unlimited:
                await throttle.pace(received)
            if eof:
                return
