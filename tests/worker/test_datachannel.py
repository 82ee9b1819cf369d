"""Data channels on real loopback TCP connections, with real files.

A :class:`SocketChannel` moves file bytes zero-copy when the file has a
descriptor and buffered otherwise; a channel that only implements the two
primitives (as an FTPS channel will) moves the same bytes through the same
transfer code.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path, PurePosixPath

import pytest

from ftp_cluster.worker import sockio
from ftp_cluster.worker.ascii import AsciiDownload, AsciiUpload
from ftp_cluster.worker.datachannel import DataChannel, SocketChannel
from ftp_cluster.worker.pathio import MemoryPathIO, PathIO
from tests.worker.loopback import UNLIMITED, run, tcp_pair

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)


class StreamChannel(DataChannel):
    """Only the two primitives and close, over asyncio streams: the shape of a
    channel that wraps its connection (TLS), with no zero-copy of its own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.moves: list[int] = []
        super().__init__(UNLIMITED, self.moves.append)
        self._reader, self._writer = reader, writer

    @classmethod
    async def on(cls, sock: socket.socket) -> StreamChannel:
        return cls(*await asyncio.open_connection(sock=sock))

    async def _send(self, data: bytes | memoryview) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def _fill(self, buffer: memoryview) -> tuple[int, bool]:
        filled = 0
        while filled < len(buffer):
            chunk = await self._reader.read(len(buffer) - filled)
            if not chunk:
                return filled, True
            buffer[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            self.moved(len(chunk))
        return filled, False

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def receive_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    parts = []
    while chunk := await loop.sock_recv(sock, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("kind", ["disk", "memory", "disk-ascii"])
def test_send_file_delivers_every_byte(kind: str, tmp_path: Path) -> None:
    text = PAYLOAD.replace(b"\r", b"")
    (tmp_path / "f").write_bytes(text)

    async def main() -> None:
        if kind == "memory":
            path_io = MemoryPathIO()
            upload = await path_io.open_upload(PurePosixPath("/f"))
            await upload.write(text)
            await upload.commit()
            source = await path_io.open_download(PurePosixPath("/f"))
        else:
            source = await PathIO().open_download(PurePosixPath(tmp_path / "f"))
        if kind == "disk-ascii":
            source = AsciiDownload(source)
        assert (source.fileno() is not None) == (kind == "disk")  # only then zero-copy
        server, client = tcp_pair()
        moved: list[int] = []
        channel = SocketChannel(server, UNLIMITED, moved.append, sockio.Pipe())
        with client:
            receiving = asyncio.ensure_future(receive_all(client))
            await channel.send_file(source, 0)
            await channel.close()
            received = await receiving
        await source.close()
        expected = text.replace(b"\n", b"\r\n") if kind == "disk-ascii" else text
        assert received == expected and sum(moved) == len(expected)

    run(main)


@pytest.mark.parametrize("kind", ["disk", "memory", "disk-ascii", "streams"])
def test_receive_file_stores_every_byte(kind: str, tmp_path: Path) -> None:
    async def main() -> None:
        path_io = MemoryPathIO() if kind == "memory" else PathIO()
        target_path = PurePosixPath("/f") if kind == "memory" else PurePosixPath(tmp_path / "f")
        target = await path_io.open_upload(target_path)
        if kind == "disk-ascii":
            target = AsciiUpload(target)
        server, client = tcp_pair()
        pipe = sockio.Pipe()
        moved: list[int] = []
        channel: DataChannel = (
            await StreamChannel.on(server)
            if kind == "streams"
            else SocketChannel(server, UNLIMITED, moved.append, pipe)
        )

        def send() -> None:
            with client:
                client.sendall(PAYLOAD)

        sending = asyncio.get_running_loop().run_in_executor(None, send)
        await channel.receive_file(target)
        await sending
        await target.commit()
        await channel.close()
        pipe.close()
        download = await path_io.open_download(target_path)
        stored = await download.read(len(PAYLOAD) * 2)
        await download.close()
        expected = PAYLOAD.replace(b"\r\n", b"\n") if kind == "disk-ascii" else PAYLOAD
        assert stored == expected
        counted = channel.moves if isinstance(channel, StreamChannel) else moved
        assert sum(counted) == len(PAYLOAD)

    run(main)


def test_a_wrapping_channel_takes_the_buffered_path_for_files_with_descriptors(
    tmp_path: Path,
) -> None:
    (tmp_path / "f").write_bytes(PAYLOAD)

    async def main() -> None:
        source = await PathIO().open_download(PurePosixPath(tmp_path / "f"))
        assert source.fileno() is not None
        server, client = tcp_pair()
        channel = await StreamChannel.on(server)
        with client:
            receiving = asyncio.ensure_future(receive_all(client))
            await channel.send_file(source, 0)
            await channel.close()
            assert await receiving == PAYLOAD
        await source.close()
        # Bytes were read and sent in buffers, not by sendfile behind its back.
        assert len(channel.moves) > 1 and sum(channel.moves) == len(PAYLOAD)

    run(main)
