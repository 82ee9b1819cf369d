"""Connections that come through a trusted proxy: reading their PROXY headers.

With ``[server] proxy_protocol`` on, a connection whose peer is in
``trusted_proxies`` must start with a PROXY v1 or v2 header
(:mod:`.protocol.proxy_header`), and the address in it is the client's for
everything after. A connection from anywhere else is a direct client.

The control connection reads its header through :class:`HeaderWait`, fed from
``data_received`` (no task, one timer); a passive data connection through
:func:`read_data_header`, which never reads a byte past the header, so an
upload's first bytes (which a proxy may send in the same segment) stay in the
socket for the transfer. Either gets ``socket_timeout`` (or
:data:`DEFAULT_HEADER_TIMEOUT` without one) for the whole header: a
slow-loris header costs one socket and one timer until then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable

from ftp_cluster.shared.settings import ServerSettings
from ftp_cluster.worker.protocol.addresses import normalise_host
from ftp_cluster.worker.protocol.proxy_header import (
    MAX_HEADER,
    Incomplete,
    ProxyHeader,
    parse,
)

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "HeaderWait",
    "TrustedProxies",
    "client_host",
    "header_timeout",
    "read_data_header",
    "trusted_proxies",
]

#: Seconds for a header when ``socket_timeout`` is off: a header never waits forever.
DEFAULT_HEADER_TIMEOUT = 30.0

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The networks whose connections must start with a PROXY header."""

    __slots__ = ("_known", "_networks")

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )
        self._known: dict[str, bool] = {}  # a proxy has few addresses: asked once each

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (a normalised address) is a trusted proxy."""
        trusted = self._known.get(host)
        if trusted is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return False
            trusted = any(address in network for network in self._networks)
            if len(self._known) < 1024:
                self._known[host] = trusted
        return trusted


def trusted_proxies(settings: ServerSettings) -> TrustedProxies | None:
    """The server's trusted proxies; ``None`` with ``proxy_protocol`` off."""
    if not settings.proxy_protocol:
        return None
    return TrustedProxies(settings.trusted_proxies)


def header_timeout(settings: ServerSettings) -> float:
    """Seconds a connection gets to send its whole header."""
    timeout = settings.socket_timeout
    return DEFAULT_HEADER_TIMEOUT if timeout is None else timeout


def client_host(header: ProxyHeader, connection_peer: str) -> str:
    """The client's address: the header's, or the connection's own for LOCAL/UNKNOWN."""
    if header.source is None:
        return connection_peer
    return normalise_host(header.source[0])


class HeaderWait:
    """The control connection's header, collected as its bytes arrive."""

    __slots__ = ("_buffer", "_timer")

    def __init__(self, timeout: float, on_timeout: Callable[[], None]) -> None:
        self._buffer = b""
        self._timer = asyncio.get_running_loop().call_later(timeout, on_timeout)

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """The header and the bytes after it once whole; ``None``: more needed.

        Raises :class:`ProxyHeaderError` for a bad header.
        """
        self._buffer += data
        result = parse(self._buffer)
        if isinstance(result, Incomplete):
            return None
        self.cancel()
        rest = self._buffer[result.consumed :]
        self._buffer = b""
        return result.header, rest

    def cancel(self) -> None:
        self._timer.cancel()


async def read_data_header(sock: socket.socket, timeout: float) -> ProxyHeader:
    """Read the PROXY header off a fresh data connection, and not a byte more.

    Raises :class:`ProxyHeaderError`, ``TimeoutError``, or ``ConnectionError``
    when the peer closes before the header is whole.
    """
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    buffer = b""
    async with asyncio.timeout(timeout):
        while True:
            result = parse(buffer)
            if not isinstance(result, Incomplete):
                return result.header
            want = result.known
            if want is None:
                want = _v1_bytes_ready(sock, buffer)
            chunk = await loop.sock_recv(sock, want)
            if not chunk:
                raise ConnectionError("closed before the end of the PROXY header")
            buffer += chunk


def _v1_bytes_ready(sock: socket.socket, buffer: bytes) -> int:
    """How much of a v1 line can be read now: up to its CRLF, or what has come."""
    try:
        waiting = sock.recv(MAX_HEADER, socket.MSG_PEEK)
    except BlockingIOError:
        return 1  # nothing yet: sock_recv waits for the next byte
    end = waiting.find(b"\r\n")
    if end >= 0:
        return end + 2
    return max(len(waiting), 1)  # all before the CRLF is the line's (empty: the EOF)
