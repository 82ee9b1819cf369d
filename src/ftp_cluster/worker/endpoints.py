"""Where data connections come from: passive listeners (with a port pool) and active connects.

What then moves over a data connection is :mod:`.datachannel`'s business.

A passive listener accepts exactly one connection, and only from the control
connection's peer address: a connection from anywhere else is a stolen data
connection, closed at once while the listener keeps waiting for the client.
One from a trusted proxy (``proxy_protocol``) is checked by the client address
in its PROXY header instead (:mod:`.proxied`).

Every data connection keeps at most ``NOTSENT_LOWAT`` bytes queued unsent
in the kernel (``TCP_NOTSENT_LOWAT``); see :func:`_data_socket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

from ftp_cluster.worker.protocol.addresses import normalise_host
from ftp_cluster.worker.protocol.proxy_header import ProxyHeaderError
from ftp_cluster.worker.proxied import TrustedProxies, client_host, read_data_header

__all__ = [
    "NOTSENT_LOWAT",
    "NoFreePort",
    "PassiveListener",
    "PortPool",
    "connect_active",
]

log = logging.getLogger("ftp_cluster.worker")

#: Unsent bytes a data connection may queue before it stops being writable.
NOTSENT_LOWAT = 64 * 1024
_TCP_NOTSENT_LOWAT: int | None = getattr(socket, "TCP_NOTSENT_LOWAT", None)


class NoFreePort(OSError):
    """Every port of the passive range is in use."""


class PortPool:
    """Binds passive listeners inside a port range, or on a kernel-chosen port."""

    def __init__(self, ports: range | None) -> None:
        self._ports = ports
        self._cursor = 0

    def bind(self, host: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self._ports is None:
            return _listen(family, host, 0)
        count = len(self._ports)
        for attempt in range(count):
            port = self._ports[(self._cursor + attempt) % count]
            try:
                sock = _listen(family, host, port)
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._cursor = (self._cursor + attempt + 1) % count
            return sock
        raise NoFreePort(errno.EADDRINUSE, "no free passive port")


def _listen(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(8)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class PassiveListener:
    """One PASV/EPSV listener and the single data connection it yields."""

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        proxies: TrustedProxies | None = None,
        header_timeout: float = 30.0,
    ) -> None:
        self._sock = sock
        self._peer = normalise_host(peer)
        self._proxies = proxies
        self._header_timeout = header_timeout
        self.port: int = sock.getsockname()[1]
        self._task: asyncio.Task[socket.socket] = asyncio.get_running_loop().create_task(
            self._accept()
        )

    async def _accept(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        try:
            while True:
                conn, address = await loop.sock_accept(self._sock)
                source = await self._client_of(conn, normalise_host(address[0]))
                if source == self._peer:
                    return _data_socket(conn)
                if source is not None:
                    log.warning(
                        "refused data connection from %s (session peer is %s)", source, self._peer
                    )
                conn.close()
        finally:
            self._sock.close()

    async def _client_of(self, conn: socket.socket, address: str) -> str | None:
        """Whose data connection this is; ``None``: a trusted proxy's, with a bad header."""
        if self._proxies is None or not self._proxies.trusts(address):
            return address
        try:
            header = await read_data_header(conn, self._header_timeout)
        except (ProxyHeaderError, TimeoutError, OSError) as error:
            log.warning("refused data connection from proxy %s: %s", address, error)
            return None
        return client_host(header, address)

    async def connection(self, timeout: float | None) -> socket.socket:
        """The client's data connection; raises TimeoutError if it does not come."""
        if self._task.done():  # the usual case: the client connected before RETR
            return self._task.result()
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._task)

    def close(self) -> None:
        """Close the listener, and the data connection if it came but was not used."""
        if self._task.done() and not self._task.cancelled() and self._task.exception() is None:
            self._task.result().close()
        self._task.cancel()
        self._sock.close()


async def connect_active(
    host: str, port: int, local_host: str, timeout: float | None
) -> socket.socket:
    """Connect to the client's PORT/EPRT address from the control connection's address."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        _data_socket(sock)
        with contextlib.suppress(OSError):
            sock.bind((local_host, 0))
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _data_socket(sock: socket.socket) -> socket.socket:
    """Make ``sock`` ready to carry a transfer: non-blocking, small unsent queue.

    By default Linux lets a socket queue its whole send buffer (up to 4 MiB)
    of data the peer's window has no room for yet: 300 concurrent downloads
    held about 800 MB that way, pinning page-cache pages and socket memory
    for nothing, and 300 x RETR of 10 MiB on loopback took about 10% longer
    (medians of 12 interleaved runs) than with this small queue. The server
    now sends as the client reads; a lone fast transfer loses nothing, since
    the socket is writable again as soon as its queue drains.
    """
    sock.setblocking(False)
    if _TCP_NOTSENT_LOWAT is not None:
        with contextlib.suppress(OSError):  # not every platform has it
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
    return sock
