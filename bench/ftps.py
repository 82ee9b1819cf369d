"""The load client's FTPS: its TLS context, and protected data connections that resume.

The control connection is upgraded in place after ``AUTH TLS`` (asyncio's
``start_tls``, see :mod:`bench.client`). Data connections cannot be: asyncio
has no way to offer a TLS session to resume, and servers that require reuse
(ftp-cluster, vsftpd's ``require_ssl_reuse``) refuse a data connection with a
fresh session. Each one is therefore an ``ssl.SSLSocket`` on the raw
non-blocking socket, offered the control connection's session, and moved by
reader/writer callbacks on the event loop: no future per read, no copy but
OpenSSL's decryption into the shared 1 MiB receive buffer, and uploads
encrypted straight from a read-only mapping of the test file.

The client verifies the server's certificate (the run's self-signed one) as a
real client would; every server pays the same handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import mmap
import socket
import ssl

from bench.receiver import Meter, shared_buffer

__all__ = ["ProtectedData", "client_context"]

_SEND_CHUNK = 256 << 10  # bytes per SSL_write: 16 records, few calls, little memory
_CLOSE_TIMEOUT = 5.0  # seconds to wait for the server's close_notify or EOF after ours


@functools.cache
def client_context(ca_file: str) -> ssl.SSLContext:
    """One client context per process that trusts ``ca_file`` (the run's certificate)."""
    return ssl.create_default_context(cafile=ca_file)


class ProtectedData:
    """One protected (PROT P) data connection: handshake, receive or send, close_notify."""

    def __init__(
        self,
        raw: socket.socket,
        context: ssl.SSLContext,
        host: str,
        session: ssl.SSLSession | None,
    ) -> None:
        self.tls = context.wrap_socket(
            raw,
            server_side=False,
            do_handshake_on_connect=False,
            server_hostname=host,
            session=session,
        )
        self._loop = asyncio.get_running_loop()
        self._fd = self.tls.fileno()

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed the offered (control connection's) session."""
        return bool(self.tls.session_reused)

    async def _ready(self, write: bool) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        (self._loop.add_writer if write else self._loop.add_reader)(self._fd, wake)
        try:
            await ready
        finally:
            (self._loop.remove_writer if write else self._loop.remove_reader)(self._fd)

    async def handshake(self) -> None:
        """The TLS handshake as the client (the server is the TLS server on data connections)."""
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                await self._ready(write=False)
            except ssl.SSLWantWriteError:
                await self._ready(write=True)

    async def receive(self, meter: Meter | None = None) -> int:
        """Read and decrypt until the server ends the connection; returns the bytes."""
        buffer = shared_buffer()
        size = len(buffer)
        done: asyncio.Future[int] = self._loop.create_future()
        received = 0

        def readable() -> None:
            nonlocal received
            while not done.done():
                try:
                    count = self.tls.recv_into(buffer, size)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return
                except OSError as exc:  # ssl.SSLError included
                    done.set_exception(exc)
                    return
                if count == 0:  # close_notify or EOF: the transfer is complete
                    done.set_result(received)
                    return
                received += count
                if meter is not None:
                    meter.add(count)

        self._loop.add_reader(self._fd, readable)
        try:
            readable()  # records OpenSSL may already hold from the handshake's reads
            return await done
        finally:
            self._loop.remove_reader(self._fd)

    async def send_file(self, fd: int, size: int) -> int:
        """Encrypt and send ``size`` bytes of ``fd`` from offset 0; returns the bytes sent."""
        if size == 0:
            return 0
        mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        view = memoryview(mapped)
        done: asyncio.Future[int] = self._loop.create_future()
        offset = 0

        def writable() -> None:
            nonlocal offset
            while offset < size:
                try:
                    # A retry after SSLWantWrite passes the same bytes again, as OpenSSL wants.
                    with view[offset : offset + _SEND_CHUNK] as chunk:
                        offset += self.tls.send(chunk)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    return
                except OSError as exc:
                    if not done.done():
                        done.set_exception(exc)
                    return
            if not done.done():
                done.set_result(offset)

        self._loop.add_writer(self._fd, writable)
        try:
            return await done
        finally:
            self._loop.remove_writer(self._fd)
            view.release()
            with contextlib.suppress(BufferError):
                mapped.close()

    async def close_notify(self) -> None:
        """Send close_notify and wait (bounded) for the server's, or its EOF.

        An upload is only complete once the server read the client's
        close_notify (ftp-cluster discards one that ends without it), and
        closing before the server's own close_notify and tickets are read
        would make the kernel reset the connection.
        """
        with contextlib.suppress(OSError, TimeoutError):  # the server closed: also done
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                while True:
                    try:
                        self.tls.unwrap()
                        return
                    except ssl.SSLWantReadError:
                        await self._ready(write=False)
                    except ssl.SSLWantWriteError:
                        await self._ready(write=True)

    def close(self) -> None:
        self.tls.close()
