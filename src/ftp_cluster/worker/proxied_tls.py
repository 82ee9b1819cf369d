"""The implicit FTPS port behind a trusted proxy: the PROXY header before TLS.

On the plain control port :class:`~ftp_cluster.worker.proxied.HeaderWait`
reads the header from ``data_received``; the bytes after it are commands.
On the implicit FTPS port they are the ClientHello (HAProxy sends it in the
header's segment), which asyncio's ``start_tls`` cannot be handed. So this
listener accepts the sockets itself and, for a trusted proxy's connection,
reads the header off the raw socket with
:func:`~ftp_cluster.worker.proxied.read_data_header`, never a byte past it,
before asyncio owns the connection: the handshake then reads the ClientHello
from the socket as on a direct connection. Admission, limits, idle and drain
are the control connection's, as for a connection of ``create_server``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Callable

from ftp_cluster.worker.context import WorkerContext
from ftp_cluster.worker.protocol.addresses import normalise_host
from ftp_cluster.worker.protocol.proxy_header import ProxyHeaderError
from ftp_cluster.worker.proxied import (
    TrustedProxies,
    client_host,
    header_timeout,
    read_data_header,
)

__all__ = ["ProxiedTLSListener"]

log = logging.getLogger("ftp_cluster.worker")

#: Seconds without accepting after the process ran out of descriptors or
#: memory (asyncio's own servers wait as long).
_RETRY_DELAY = 1.0

#: accept() failures that say the process or the system is short of resources.
_SHORT_OF = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: Makes a control connection; ``client``: the address a header gave.
ConnectionFactory = Callable[..., asyncio.Protocol]


class ProxiedTLSListener:
    """Accepts on one implicit FTPS socket, reading trusted proxies' headers first."""

    __slots__ = ("_accepting", "_ctx", "_factory", "_pending", "_proxies", "sock")

    def __init__(
        self,
        sock: socket.socket,
        ctx: WorkerContext,
        proxies: TrustedProxies,
        factory: ConnectionFactory,
    ) -> None:
        self.sock = sock
        self._ctx = ctx
        self._proxies = proxies
        self._factory = factory
        self._accepting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # headers still being read

    def start(self) -> None:
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    @property
    def accepting(self) -> bool:
        """Whether the listening socket is still open."""
        return self._accepting is not None

    def close(self) -> None:
        """Stop accepting and close the listening socket; headers being read go on."""
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        self.sock.close()

    def drop_pending(self) -> None:
        """Close the connections whose header has not come yet (drain, close)."""
        for task in list(self._pending):
            task.cancel()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(self.sock)
            except ConnectionError:
                continue  # reset before accept(): that peer's alone
            except OSError as error:
                if error.errno not in _SHORT_OF:
                    # The socket is gone (EBADF, EINVAL): retrying would spin.
                    log.error("implicit FTPS port: accept failed: %s; not accepting", error)
                    return
                log.error("implicit FTPS port: accept failed: %s; pausing", error)
                await asyncio.sleep(_RETRY_DELAY)
                continue
            self._connection(conn, normalise_host(address[0]))

    def _connection(self, conn: socket.socket, peer: str) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(conn, peer))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        # wait_closed waits for it: no socket is left half set up.
        self._ctx.background.add(task)
        task.add_done_callback(self._ctx.background.discard)

    async def _serve(self, conn: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        factory = self._factory
        if self._proxies.trusts(peer) and not self._ctx.draining:
            try:
                client = await self._header(conn, peer)
            except asyncio.CancelledError:  # drain or close: as the plain port's _drop
                conn.close()
                raise
            if client is None:
                conn.close()
                return
            factory = functools.partial(factory, client=client)
        try:
            # Cancelled in here, the loop closes the transport it was making.
            await loop.connect_accepted_socket(factory, conn)
        except OSError as error:  # reset between accept() and the transport
            log.debug("implicit FTPS connection from %s lost before its session: %s", peer, error)
            conn.close()

    async def _header(self, conn: socket.socket, proxy: str) -> str | None:
        """The client's address from the header; ``None``: logged, to be closed."""
        try:
            header = await read_data_header(conn, header_timeout(self._ctx.settings))
        except ProxyHeaderError as error:
            problem = f"bad PROXY header from {proxy}: {error}"
        except TimeoutError:
            problem = "no PROXY header in time"
        except OSError as error:
            problem = f"closed before its PROXY header: {error}"
        else:
            return client_host(header, proxy)
        # Numbered like any accepted connection, so the log reads as the plain port's.
        log.info("session %s: %s (implicit FTPS port)", self._ctx.next_session_id(), problem)
        return None
