"""A minimal FTP client for load generation: one control connection per session.

Only what the scenarios need: greeting, USER/PASS, TYPE I, EPSV (falling back
to PASV), RETR, STOR, PWD and QUIT, and for FTPS ``AUTH TLS``, ``PBSZ 0`` and
``PROT P`` with data connections that resume the control session
(:mod:`bench.ftps`). Replies are parsed by a plain
``asyncio.Protocol`` (no streams, no per-line tasks) so thousands of sessions
stay cheap on the client side; data connections are raw non-blocking sockets:
RETR reads through :mod:`bench.receiver` and STOR sends with ``os.sendfile``
straight from the test file, so the client is never the bottleneck.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast

from bench.ftps import ProtectedData
from bench.receiver import Meter, receive

__all__ = ["FtpReplyError", "FtpSession", "Reply", "failure_kind", "send_file"]

_EPSV = re.compile(r"\(\|\|\|(\d+)\|\)")
_PASV = re.compile(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_QUIT_GRACE = 2.0  # seconds to wait for the server to close after 221


@dataclass(frozen=True, slots=True)
class Reply:
    """One (possibly multi-line) FTP reply."""

    code: int
    text: str


class FtpReplyError(Exception):
    """The server answered with a code the client did not expect."""

    def __init__(self, command: str, reply: Reply) -> None:
        super().__init__(f"{command!r} -> {reply.code} {reply.text}")
        self.reply = reply


def failure_kind(exc: BaseException) -> str:
    """A short, countable name for why a session failed."""
    if isinstance(exc, FtpReplyError):
        return f"reply {exc.reply.code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


class _ControlProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._multiline: bytes | None = None
        self._lines: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self._multiline is not None:
            self._lines.append(line)
            if line[:3] == self._multiline and line[3:4] == b" ":
                self._multiline = None
                self._push(line[:3], b"\n".join(self._lines))
            return
        if line[3:4] == b"-":
            self._multiline = line[:3]
            self._lines = [line]
            return
        self._push(line[:3], line)

    def _push(self, code: bytes, text: bytes) -> None:
        if not code.isdigit():
            self._fail(ConnectionError(f"not an FTP reply: {text[:80]!r}"))
            return
        self._replies.append(Reply(int(code), text[4:].decode("utf-8", "replace")))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("control connection closed by the server"))
        if not self.closed.done():
            self.closed.set_result(None)

    async def reply(self) -> Reply:
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._replies.popleft()


async def _writable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def send_file(sock: socket.socket, fd: int, size: int) -> int:
    """Send ``size`` bytes of ``fd`` from offset 0 with ``os.sendfile``; returns bytes sent."""
    offset = 0
    while offset < size:
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, size - offset)
        except BlockingIOError:
            await _writable(sock)
            continue
        if sent == 0:
            raise ConnectionResetError("data connection closed during STOR")
        offset += sent
    return offset


class FtpSession:
    """One logged-in (or logging-in) FTP control connection."""

    def __init__(self, transport: asyncio.Transport, protocol: _ControlProtocol, host: str) -> None:
        self._transport = transport
        self._protocol = protocol
        self._host = host
        self._epsv = True
        self._tls: ssl.SSLContext | None = None  # set once the control connection is TLS
        self.tls_version: str | None = None
        self.data_connections = 0  # protected data connections handshaken
        self.data_resumed = 0  # ... of which resumed the control connection's session

    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None = None) -> FtpSession:
        """Connect and read the 220 greeting; with ``tls``, also AUTH TLS and the handshake."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_ControlProtocol, host, port)
        session = cls(transport, protocol, host)
        try:
            await session._expect("<greeting>", 220)
            if tls is not None:
                await session._start_tls(tls)
        except BaseException:
            session.abort()
            raise
        return session

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        await self.command("AUTH TLS", 234)
        upgraded = await asyncio.get_running_loop().start_tls(
            self._transport, self._protocol, context, server_hostname=self._host
        )
        # uvloop's TLS transport has a Transport's methods without being a subclass.
        self._transport = cast(asyncio.Transport, upgraded)
        self._tls = context
        tls = self._transport.get_extra_info("ssl_object")
        self.tls_version = tls.version() if tls is not None else None

    def _control_session(self) -> ssl.SSLSession | None:
        """The control connection's TLS session, taken at each transfer (TLS 1.3 tickets
        arrive after the handshake)."""
        tls = self._transport.get_extra_info("ssl_object")
        return tls.session if tls is not None else None

    def _send(self, line: str) -> None:
        self._transport.write(line.encode() + b"\r\n")

    async def _expect(self, command: str, *codes: int) -> Reply:
        reply = await self._protocol.reply()
        if reply.code not in codes:
            raise FtpReplyError(command, reply)
        return reply

    async def command(self, line: str, *codes: int) -> Reply:
        """Send one command and check the reply code."""
        self._send(line)
        return await self._expect(line.split(" ", 1)[0], *codes)

    async def login(self, user: str, password: str) -> None:
        """USER, PASS and TYPE I."""
        self._send(f"USER {user}")
        reply = await self._expect("USER", 230, 331)
        if reply.code == 331:
            await self.command(f"PASS {password}", 230)
        if self._tls is not None:
            await self.command("PBSZ 0", 200)
            await self.command("PROT P", 200)
        await self.command("TYPE I", 200)

    async def pwd(self) -> str:
        return (await self.command("PWD", 257)).text

    async def _passive(self) -> socket.socket:
        address = await self._passive_address()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _passive_address(self) -> tuple[str, int]:
        if self._epsv:
            self._send("EPSV")
            reply = await self._protocol.reply()
            if reply.code == 229 and (match := _EPSV.search(reply.text)):
                return self._host, int(match.group(1))
            if reply.code not in (500, 501, 502):
                raise FtpReplyError("EPSV", reply)
            self._epsv = False
        reply = await self.command("PASV", 227)
        match = _PASV.search(reply.text)
        if match is None:
            raise FtpReplyError("PASV", reply)
        numbers = [int(group) for group in match.groups()]
        return ".".join(map(str, numbers[:4])), numbers[4] * 256 + numbers[5]

    async def _protected(self, sock: socket.socket, command: str) -> ProtectedData:
        """Send ``command`` and handshake on its data connection while the 150 comes.

        ftp-cluster starts the TLS handshake as soon as the data connection is
        made; pyftpdlib and vsftpd only after the command: so the client sends
        the command first and runs its handshake beside the wait for the reply.
        """
        assert self._tls is not None
        data = ProtectedData(sock, self._tls, self._host, self._control_session())
        handshake = asyncio.ensure_future(data.handshake())
        try:
            await self.command(command, 125, 150)
            await handshake
        except BaseException:
            handshake.cancel()
            data.close()
            raise
        self.data_connections += 1
        self.data_resumed += data.resumed
        return data

    async def retr(self, path: str, meter: Meter | None = None) -> int:
        """Download ``path`` and return the number of bytes received."""
        sock = await self._passive()
        if self._tls is not None:
            data = await self._protected(sock, f"RETR {path}")
            try:
                received = await data.receive(meter)
            finally:
                data.close()
            await self._expect("RETR", 226, 250)
            return received
        try:
            await self.command(f"RETR {path}", 125, 150)
        except BaseException:
            sock.close()
            raise
        received = await receive(sock, meter)
        await self._expect("RETR", 226, 250)
        return received

    async def stor(self, path: str, fd: int, size: int) -> int:
        """Upload ``size`` bytes of ``fd`` as ``path``; returns the bytes sent."""
        sock = await self._passive()
        if self._tls is not None:
            data = await self._protected(sock, f"STOR {path}")
            try:
                sent = await data.send_file(fd, size)
                await data.close_notify()
            finally:
                data.close()
            await self._expect("STOR", 226, 250)
            return sent
        try:
            await self.command(f"STOR {path}", 125, 150)
            sent = await send_file(sock, fd, size)
        finally:
            sock.close()
        await self._expect("STOR", 226, 250)
        return sent

    async def quit(self) -> None:
        """QUIT, then let the server close first (its side keeps the TIME_WAIT)."""
        try:
            async with asyncio.timeout(_QUIT_GRACE):
                await self.command("QUIT", 221)
                await self._protocol.closed
        except (OSError, TimeoutError, FtpReplyError):
            pass
        finally:
            self._transport.abort()

    def abort(self) -> None:
        """Drop the control connection at once."""
        self._transport.abort()
