"""TYPE A: line ends translated on the wire (RFC 959 §3.1.1.1).

Files keep Unix line ends (LF); the network form is CR LF. Downloads turn
each LF that is not already preceded by CR into CR LF, uploads turn CR LF
into LF, both across chunk boundaries: a CR that ends one chunk is held
until the next shows whether an LF follows. Other bytes pass unchanged (no
charset conversion), as vsftpd and ProFTPD do.

The wrappers have no descriptor, so an ASCII transfer takes the buffered
path of its data channel; binary transfers keep their zero-copy paths.
"""

from __future__ import annotations

import re

from ftp_cluster.worker.pathio.base import Download, Upload

__all__ = ["AsciiDownload", "AsciiUpload", "FromNetwork", "ToNetwork"]

_BARE_LF = re.compile(rb"(?<!\r)\n")
_CR = 0x0D


class ToNetwork:
    """LF -> CR LF for data the server sends."""

    __slots__ = ("_after_cr",)

    def __init__(self) -> None:
        self._after_cr = False

    def convert(self, data: bytes) -> bytes:
        if not data:
            return data
        head = b""
        if self._after_cr and data[0] == 0x0A:  # the LF of a CR LF split across chunks
            head, data = b"\n", data[1:]
        self._after_cr = (data or head)[-1] == _CR
        return head + _BARE_LF.sub(b"\r\n", data)


class FromNetwork:
    """CR LF -> LF for data the server receives; a lone CR is kept."""

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def convert(self, data: bytes) -> bytes:
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r"):
            self._pending_cr = True
            data = data[:-1]
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        """What is still held at the end of the stream (a final lone CR)."""
        pending, self._pending_cr = self._pending_cr, False
        return b"\r" if pending else b""


class AsciiDownload(Download):
    """A download whose line ends are sent as CR LF."""

    def __init__(self, inner: Download) -> None:
        self._inner = inner
        self._codec = ToNetwork()

    async def read(self, size: int) -> bytes:
        return self._codec.convert(await self._inner.read(size))

    def fileno(self) -> int | None:
        return None  # the bytes must pass through here

    async def close(self) -> None:
        await self._inner.close()


class AsciiUpload(Upload):
    """An upload whose CR LF line ends are stored as LF."""

    def __init__(self, inner: Upload) -> None:
        self._inner = inner
        self._codec = FromNetwork()

    async def write(self, data: bytes | memoryview) -> None:
        converted = self._codec.convert(bytes(data))
        if converted:
            await self._inner.write(converted)

    async def commit(self) -> None:
        tail = self._codec.flush()
        if tail:
            await self._inner.write(tail)
        await self._inner.commit()

    async def abort(self) -> None:
        await self._inner.abort()
