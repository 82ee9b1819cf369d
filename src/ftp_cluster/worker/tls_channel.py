"""A protected (PROT P) data connection: TLS over the raw socket, no zero-copy.

The server is the TLS server on every data connection, passive or active.
The handshake runs on the control session's own context (:mod:`.tls`), as
soon as the connection is made (clients such as aioftp's start TLS at once).
With ``session_reuse`` required, a data connection whose handshake did not
resume the control connection's TLS session is refused: it may belong to
someone else. With client certificates, it must present the control
connection's certificate.

An :class:`ssl.SSLObject` with memory BIOs does the TLS; this module moves
its bytes with the socket's readiness, like :mod:`.sockio`, so a channel
costs no asyncio transport or protocol. Every file takes the buffered path
of :class:`~.datachannel.DataChannel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import cast

from ftp_cluster.worker.datachannel import DataChannel, Moved, NotProtected
from ftp_cluster.worker.throttle import Throttle

__all__ = ["NotResumed", "TLSChannel", "TLSWire", "handshake"]

_READ = 256 * 1024
#: Plaintext per SSLObject.write: large enough that per-call costs vanish,
#: small enough to keep the outgoing BIO (and its copy) modest.
_WRITE = 256 * 1024


class NotResumed(NotProtected):
    """The data connection's TLS handshake proved no tie to its control session."""


class TLSWire:
    """The socket under an :class:`ssl.SSLObject`: flush what it wrote, feed what came."""

    __slots__ = ("incoming", "loop", "outgoing", "sock", "tls")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)

    async def flush(self) -> None:
        if self.outgoing.pending:
            await self.loop.sock_sendall(self.sock, self.outgoing.read())

    async def feed(self) -> bool:
        """Read what the socket has into the TLS object; False at the peer's EOF."""
        data = await self.loop.sock_recv(self.sock, _READ)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True


async def handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    require_reuse: bool,
    peer_certificate: bytes | None,
    timeout: float | None,
) -> TLSWire:
    """Run the server handshake on ``sock``; raise :class:`NotResumed` or OSError."""
    wire = TLSWire(sock, context)
    async with asyncio.timeout(timeout):
        while True:
            try:
                wire.tls.do_handshake()
            except ssl.SSLWantReadError:
                await wire.flush()
                if not await wire.feed():
                    raise ConnectionResetError("peer closed during the TLS handshake") from None
                continue
            break
        await wire.flush()
    if require_reuse and not wire.tls.session_reused:
        raise NotResumed("the data connection did not resume the control connection's TLS session")
    if peer_certificate is not None and wire.tls.getpeercert(binary_form=True) != peer_certificate:
        raise NotResumed("the data connection presented another client certificate")
    return wire


class TLSChannel(DataChannel):
    """A data connection after its handshake (see :func:`handshake`)."""

    def __init__(self, wire: TLSWire, throttle: Throttle, moved: Moved) -> None:
        super().__init__(throttle, moved)
        self._wire = wire

    async def _send(self, data: bytes | memoryview) -> None:
        wire = self._wire
        view = memoryview(data)
        for start in range(0, len(view), _WRITE):
            wire.tls.write(view[start : start + _WRITE])
            await wire.flush()

    async def _fill(self, buffer: memoryview) -> tuple[int, bool]:
        wire = self._wire
        filled = 0
        while filled < len(buffer):
            try:
                # With a buffer, read() returns a count (typeshed says bytes).
                got = cast(int, wire.tls.read(len(buffer) - filled, buffer[filled:]))
            except ssl.SSLWantReadError:
                if filled and not wire.incoming.pending:
                    # Hand over what is here rather than wait for a full buffer.
                    return filled, False
                await wire.feed()
                continue
            except ssl.SSLZeroReturnError:  # close_notify: the sender's end
                return filled, True
            except ssl.SSLEOFError:
                # A bare TCP close: a client that died mid-upload, or a
                # truncation. Not an end: the upload fails and is discarded.
                raise ConnectionResetError(
                    "data connection closed without TLS close_notify"
                ) from None
            if got == 0:
                return filled, True
            filled += got
            self.moved(got)
        return filled, False

    async def close(self) -> None:
        wire = self._wire
        with contextlib.suppress(ssl.SSLError, OSError):
            wire.tls.unwrap()  # writes our close_notify; the peer's is not awaited
        try:
            async with asyncio.timeout(1.0):
                await wire.flush()
        except (OSError, TimeoutError):
            pass
        wire.sock.close()
